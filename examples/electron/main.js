// Electron main process: start the Python backend, open the window, and make
// sure the backend never outlives the app.
//
// All the process handling (spawn, wait for IGOR_READY, forward stderr, stop
// gracefully then SIGKILL, kill on exit) lives in igor-client/node's launch(),
// which clients/js/test/launch.test.mjs tests against the real Python server.
// This file only wires it to Electron's lifecycle.
'use strict';

const path = require('node:path');
const { app, BrowserWindow, dialog, ipcMain } = require('electron');

// The demo's Python side. A project of your own would pass e.g.
// ['-m', 'igor', 'myapp.api:API', '--port', '0'] instead.
const REPO_ROOT = path.resolve(__dirname, '..', '..');
const PYTHON = process.env.IGOR_PYTHON || (process.platform === 'win32' ? 'python' : 'python3');
const PYTHON_ARGS = ['server_instance.py', '--port', '0'];

/** The running backend (a LaunchedServer), or null. */
let backend = null;
let quitting = false;

async function startBackend() {
  // igor-client is an ES module; a CommonJS main process loads it with import().
  const { launch } = await import('igor-client/node');
  return launch(PYTHON, PYTHON_ARGS, {
    cwd: REPO_ROOT,
    // The renderer makes its own connection; the main process needs none.
    connect: false,
    timeout: 30_000,
  });
}

/** Stop Python (stdin closed, then SIGTERM, then SIGKILL); safe to call twice. */
async function stopBackend() {
  const running = backend;
  backend = null;
  if (running) await running.close();
}

function createWindow() {
  const win = new BrowserWindow({
    width: 900,
    height: 680,
    title: 'Igor + Electron',
    webPreferences: {
      preload: path.join(__dirname, 'preload.js'),
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
    },
  });
  win.loadFile(path.join(__dirname, 'renderer', 'index.html'));
}

// The renderer asks for the backend's address and token through preload.js.
// The token is never put in a URL or on a command line, where other local
// programs could read it.
ipcMain.handle('igor:config', () => (backend ? { url: backend.url, token: backend.token } : null));

app.whenReady().then(async () => {
  try {
    backend = await startBackend();
  } catch (error) {
    // error.message ends with Python's own output (e.g. its traceback).
    dialog.showErrorBox('The Python backend did not start', error.message);
    app.exit(1);
    return;
  }
  const started = backend;
  started.exited.then((status) => {
    if (quitting || backend !== started) return;
    dialog.showErrorBox('The Python backend stopped', `Exit code ${status.code}, signal ${status.signal}.`);
    app.quit();
  });
  createWindow();
  app.on('activate', () => {
    if (BrowserWindow.getAllWindows().length === 0 && backend) createWindow();
  });
});

// This app is nothing without its backend: closing the last window ends both.
app.on('window-all-closed', () => {
  quitting = true;
  stopBackend().finally(() => app.quit());
});

// Quitting from the menu, Cmd+Q, or the OS: hold the quit until Python is gone.
app.on('before-quit', (event) => {
  quitting = true;
  if (!backend) return;
  event.preventDefault();
  stopBackend().finally(() => app.quit());
});
