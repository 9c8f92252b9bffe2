import { defineConfig } from 'vite';
import preact from '@preact/preset-vite';

// The agent serves the UI under a configurable path (`ui_config.content_path`, default /ui/):
// assets are referenced relative to the page, and the agent puts a <base href> and the UI's
// settings where index.html says <!--legate-config-->. core/ui/build.rs sets LEGATE_UI_OUT.
export default defineConfig({
  base: './',
  plugins: [preact()],
  build: {
    outDir: process.env.LEGATE_UI_OUT || 'dist',
    emptyOutDir: true,
    assetsInlineLimit: 0,
    sourcemap: false,
    target: 'es2022',
  },
  // `npm run dev`: the UI with live reload, its API calls sent to an agent (LEGATE_URL, default
  // a dev agent on 8500).
  server: {
    proxy: { '/v1': process.env.LEGATE_URL || 'http://127.0.0.1:8500' },
  },
});
