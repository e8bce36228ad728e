import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['packages/*/test/**/*.spec.ts']
        }
      },
      {
        test: {
          name: 'clients',
          include: ['test/**/*.spec.ts'],
          pool: 'forks',
          testTimeout: 300_000,
          hookTimeout: 120_000,
          fileParallelism: false
        }
      }
    ]
  }
})
