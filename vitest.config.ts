import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['packages/*/test/**/*.spec.ts', 'scripts/**/*.spec.ts'],
          // Many unit tests run several libp2p nodes and real files in one process: on a loaded
          // 2-core machine 5 s is not enough for them, while each still bounds its own waits.
          testTimeout: 30_000,
          hookTimeout: 30_000
        }
      },
      {
        test: {
          name: 'clients',
          include: ['test/**/*.spec.ts'],
          exclude: ['test/keystone/**', 'test/upstream/**'],
          pool: 'forks',
          testTimeout: 300_000,
          hookTimeout: 120_000,
          fileParallelism: false
        }
      },
      {
        test: {
          // Against a real Keystone that scripts/keystone.sh installs and starts.
          name: 'keystone',
          include: ['test/keystone/**/*.spec.ts'],
          globalSetup: ['test/keystone/global-setup.ts'],
          pool: 'forks',
          testTimeout: 300_000,
          hookTimeout: 120_000,
          fileParallelism: false
        }
      },
      {
        test: {
          // Against the real Glance 25 that scripts/glance.sh starts behind that Keystone.
          name: 'upstream',
          include: ['test/upstream/**/*.spec.ts'],
          // Keystone's first: this Glance and the tests use it, so this run counts as its user too.
          globalSetup: ['test/keystone/global-setup.ts', 'test/upstream/global-setup.ts'],
          pool: 'forks',
          testTimeout: 300_000,
          hookTimeout: 120_000,
          fileParallelism: false
        }
      }
    ]
  }
})
