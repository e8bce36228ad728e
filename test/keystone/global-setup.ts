import { fileURLToPath } from 'node:url'
import { serviceSetup } from '../service-setup.ts'

/** The test Keystone (scripts/keystone.sh: MariaDB, memcached, uwsgi), started unless it runs. */
export default async function setup (): Promise<() => void> {
  return await serviceSetup(fileURLToPath(new URL('../../scripts/keystone.sh', import.meta.url)), `http://127.0.0.1:${process.env.KS_PORT ?? '5000'}/v3`)
}
