import { defineConfig } from 'vitest/config';

// Test files load models that use both cores; running two files at once would only oversubscribe the
// 2-core CI machine and make timing-sensitive abort tests flaky, so files run one after another.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 180_000,
  },
});
