import { execFile } from 'node:child_process'
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { spawnAgent, tmpDir } from '@peerglance/testing'
import type { SpawnedAgent } from '@peerglance/testing'
import { glanceCli, tableValue } from '../clients/cli.ts'
import type { Cli } from '../clients/cli.ts'

/**
 * Glance's own metadata definition files, as Debian's glance-common ships them (its postinst
 * copies them to /etc/glance/metadefs, which only root and glance may read).
 */
const DEBIAN_METADEFS = '/usr/share/glance-common/metadefs'
const BIN = fileURLToPath(new URL('../../packages/agent/bin/peerglance.js', import.meta.url))
const NS = '/v2/metadefs/namespaces'

async function peerglance (url: string, ...args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  return await new Promise(resolve => {
    execFile(process.execPath, [BIN, ...args], { timeout: 120_000, env: { ...process.env, OS_IMAGE_URL: url } }, (err, stdout, stderr) => {
      resolve({ code: err == null ? 0 : (err as { code: number }).code, stdout, stderr })
    })
  })
}

async function get (url: string, path: string): Promise<{ status: number, json: any }> {
  const res = await fetch(`${url}${path}`, { headers: { accept: 'application/json' } })
  return { status: res.status, json: res.status === 200 ? await res.json() : await res.text() }
}

/** The rows of the first column of a table glance prints (a list's names). */
function firstColumn (table: string): string[] {
  return table.split('\n').filter(l => /^\|/.test(l)).slice(1).map(l => l.split('|')[1].trim())
}

describe('metadata definitions through the real clients', () => {
  let dir: string
  let agent: SpawnedAgent
  let glance: Cli

  beforeAll(async () => {
    dir = await tmpDir('peerglance-metadefs-')
    const home = join(dir, 'home')
    await mkdir(home)
    agent = await spawnAgent({ dataDir: join(dir, 'data') })
    glance = glanceCli(agent.url, home)
  })

  afterAll(async () => {
    const code = await agent?.kill('SIGTERM')
    if (dir != null) await rm(dir, { recursive: true, force: true })
    expect(code).toBe(0)
  })

  it('peerglance metadefs load imports Debian\'s metadef files as glance-manage db_load_metadefs does, and leaves them alone the second time', async () => {
    const files = (await readdir(DEBIAN_METADEFS)).filter(f => f.endsWith('.json')).sort()
    expect(files.length).toBeGreaterThan(20)
    const first = await peerglance(agent.url, 'metadefs', 'load', DEBIAN_METADEFS, '--json')
    expect(first.stderr).toBe('')
    expect(first.code).toBe(0)
    const outcomes = JSON.parse(first.stdout) as Array<{ namespace: string, outcome: string, detail?: string }>
    expect(outcomes.filter(o => o.outcome !== 'loaded')).toEqual([])
    expect(outcomes).toHaveLength(files.length)

    // Every file's namespace is there with all its contents, each property as the file defines it.
    for (const file of files) {
      const source = JSON.parse(await readFile(join(DEBIAN_METADEFS, file), 'utf8'))
      const shown = await get(agent.url, `${NS}/${source.namespace}`)
      expect(shown.status, file).toBe(200)
      expect(shown.json, file).toMatchObject({ namespace: source.namespace, visibility: source.visibility ?? 'private', protected: source.protected ?? false, owner: source.owner ?? 'admin' })
      expect(Object.keys(shown.json.properties ?? {}).sort(), file).toEqual(Object.keys(source.properties ?? {}).sort())
      expect((shown.json.objects ?? []).map((o: { name: string }) => o.name).sort(), file).toEqual((source.objects ?? []).map((o: { name: string }) => o.name).sort())
      expect((shown.json.resource_type_associations ?? []).map((a: { name: string }) => a.name).sort(), file).toEqual((source.resource_type_associations ?? []).map((a: { name: string }) => a.name).sort())
      for (const [name, definition] of Object.entries(source.properties ?? {}) as Array<[string, Record<string, unknown>]>) {
        expect(shown.json.properties[name].title, `${file} ${name}`).toBe(definition.title)
        expect(shown.json.properties[name].type, `${file} ${name}`).toBe(definition.type)
        expect(shown.json.properties[name].enum, `${file} ${name}`).toEqual(definition.enum)
      }
    }

    const again = await peerglance(agent.url, 'metadefs', 'load', DEBIAN_METADEFS)
    expect(again.code).toBe(0)
    expect(again.stdout.split('\n').filter(l => l.startsWith('exists'))).toHaveLength(files.length)
    expect((await get(agent.url, `${NS}?limit=1000`)).json.namespaces).toHaveLength(files.length)
  })

  it('peerglance metadefs load reports a bad file and loads the others (exit 1)', async () => {
    const bad = join(dir, 'bad')
    await mkdir(bad)
    await writeFile(join(bad, 'a-good.json'), JSON.stringify({ namespace: 'Test::Good', properties: { x: { title: 'X', type: 'string' } } }))
    await writeFile(join(bad, 'b-broken.json'), '{ not json')
    await writeFile(join(bad, 'c-invalid.json'), JSON.stringify({ namespace: 'Test::Invalid', visibility: 'shared' }))
    const r = await peerglance(agent.url, 'metadefs', 'load', bad)
    expect(r.code).toBe(1)
    expect(r.stdout).toMatch(/loaded {2}Test::Good/)
    expect(r.stdout).toMatch(/failed {2}b-broken\.json: not a JSON file/)
    expect(r.stdout).toMatch(/failed {2}c-invalid\.json: 400 .*'shared' is not one of \['public', 'private'\]/)
    expect((await get(agent.url, `${NS}/Test::Invalid`)).status).toBe(404)
    expect((await peerglance(agent.url, 'metadefs', 'load')).code).toBe(2)
  })

  it('glance md-namespace-*, md-object-*, md-property-*, md-tag-*, md-resource-type-* do what they say', async () => {
    expect(firstColumn(await glance.ok(['md-namespace-list']))).toContain('OS::Compute::Libvirt')
    expect(firstColumn(await glance.ok(['md-resource-type-list']))).toEqual(expect.arrayContaining(['OS::Glance::Image', 'OS::Nova::Flavor', 'OS::Cinder::Volume']))

    const created = await glance.ok(['md-namespace-create', 'Test::CLI', '--display-name', 'CLI test', '--visibility', 'public', '--description', 'made by glance'])
    expect(tableValue(created, 'visibility')).toBe('public')
    await glance.ok(['md-namespace-update', 'Test::CLI', '--description', 'changed', '--protected', 'True'])
    expect((await get(agent.url, `${NS}/Test::CLI`)).json).toMatchObject({ display_name: 'CLI test', description: 'changed', protected: true })

    await glance.ok(['md-object-create', 'Test::CLI', '--name', 'obj1', '--schema', JSON.stringify({ description: 'an object', properties: { a: { type: 'string', title: 'A' } }, required: ['a'] })])
    expect(firstColumn(await glance.ok(['md-object-list', 'Test::CLI']))).toEqual(['obj1'])
    expect(tableValue(await glance.ok(['md-object-property-show', 'Test::CLI', 'obj1', 'a']), 'title')).toBe('A')
    await glance.ok(['md-object-update', 'Test::CLI', 'obj1', '--name', 'obj2'])
    expect((await get(agent.url, `${NS}/Test::CLI/objects/obj2`)).json).toMatchObject({ name: 'obj2', description: 'an object', required: ['a'] })

    await glance.ok(['md-property-create', 'Test::CLI', '--name', 'p1', '--title', 'P1', '--schema', JSON.stringify({ type: 'string', enum: ['a', 'b'] })])
    await glance.ok(['md-property-update', 'Test::CLI', 'p1', '--title', 'P2'])
    expect((await get(agent.url, `${NS}/Test::CLI/properties/p1`)).json).toEqual({ name: 'p1', title: 'P2', type: 'string', enum: ['a', 'b'] })
    expect(firstColumn(await glance.ok(['md-property-list', 'Test::CLI']))).toEqual(['p1'])

    await glance.ok(['md-tag-create-multiple', 'Test::CLI', '--names', 'a,b,c'])
    await glance.ok(['md-tag-create', 'Test::CLI', '--name', 'd'])
    await glance.ok(['md-tag-update', 'Test::CLI', 'a', '--name', 'z'])
    expect(firstColumn(await glance.ok(['md-tag-list', 'Test::CLI'])).sort()).toEqual(['b', 'c', 'd', 'z'])

    await glance.ok(['md-resource-type-associate', 'Test::CLI', '--name', 'OS::Glance::Image', '--prefix', 'hw_'])
    expect(firstColumn(await glance.ok(['md-namespace-resource-type-list', 'Test::CLI']))).toEqual(['OS::Glance::Image'])
    expect(tableValue(await glance.ok(['md-namespace-show', 'Test::CLI', '--resource-type', 'OS::Glance::Image']), 'properties')).toBe('["hw_p1"]')

    // Protected: nothing in it can be deleted, and the namespace neither.
    for (const args of [['md-namespace-delete', 'Test::CLI'], ['md-tag-delete', 'Test::CLI', 'z'], ['md-object-delete', 'Test::CLI', 'obj2'], ['md-property-delete', 'Test::CLI', 'p1'], ['md-resource-type-deassociate', 'Test::CLI', 'OS::Glance::Image']]) {
      const r = await glance.run(args)
      expect(r.code, args.join(' ')).not.toBe(0)
      expect(r.stderr, args.join(' ')).toMatch(/403 Forbidden: Metadata definition .* is protected and cannot be deleted/)
    }
    await glance.ok(['md-namespace-update', 'Test::CLI', '--protected', 'False'])
    await glance.ok(['md-tag-delete', 'Test::CLI', 'z'])
    await glance.ok(['md-object-delete', 'Test::CLI', 'obj2'])
    await glance.ok(['md-property-delete', 'Test::CLI', 'p1'])
    await glance.ok(['md-resource-type-deassociate', 'Test::CLI', 'OS::Glance::Image'])
    await glance.ok(['md-namespace-tags-delete', 'Test::CLI'])
    const emptied = (await get(agent.url, `${NS}/Test::CLI`)).json
    expect([emptied.objects, emptied.properties, emptied.tags, emptied.resource_type_associations]).toEqual([undefined, undefined, undefined, undefined])
    await glance.ok(['md-namespace-delete', 'Test::CLI'])
    const gone = await glance.run(['md-namespace-show', 'Test::CLI'])
    expect(gone.code).not.toBe(0)
    expect(gone.stderr).toMatch(/404 Not Found: Metadata definition namespace=Test::CLI was not found/)
  })
})
