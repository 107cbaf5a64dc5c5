/// <reference types="vitest/config" />
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// The Kiln server embeds dist/ and serves it at /console/; every file here is local
// (no fonts or scripts from elsewhere).
export default defineConfig({
  base: '/console/',
  plugins: [react()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // The EC2 client is large; the console loads it once and the browser caches it.
    chunkSizeWarningLimit: 3000,
  },
  server: {
    // `npm run dev` against a running Kiln: KILN_ENDPOINT=http://127.0.0.1:8080 npm run dev
    // (the dev server then proxies sign-in; EC2 calls go to the page's origin, so for
    // anything more open the console through Kiln itself).
    proxy: process.env.KILN_ENDPOINT ? { '/console/api': process.env.KILN_ENDPOINT } : undefined,
  },
  test: {
    include: ['src/**/*.test.ts'],
    environment: 'node',
  },
});
