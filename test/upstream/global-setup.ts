import { fileURLToPath } from 'node:url'
import { serviceSetup } from '../service-setup.ts'

/**
 * The test Glance (scripts/glance.sh: glance-api behind scripts/keystone.sh's Keystone), started
 * once for every test file unless it runs; Keystone is the keystone project's global setup.
 */
export default async function setup (): Promise<() => void> {
  return await serviceSetup(fileURLToPath(new URL('../../scripts/glance.sh', import.meta.url)), `http://127.0.0.1:${process.env.GL_PORT ?? '9393'}/healthcheck`)
}
