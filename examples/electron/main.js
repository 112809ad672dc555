// Electron main process: start the Python backend, open the window, and make
// sure the backend never outlives the app.
//
// All the process handling (spawn, wait for IGOR_READY, forward stderr, stop
// gracefully then SIGKILL, kill on exit) lives in igor-client/node's launch(),
// which clients/js/test/launch.test.mjs tests against the real Python server.
// This file only wires it to Electron's lifecycle.
'use strict';

const path = require('node:path');
const { pathToFileURL } = require('node:url');
const { app, BrowserWindow, dialog, ipcMain } = require('electron');

// The demo's Python side. In development: Python running the repository's
// server_instance.py (a project of your own would pass e.g.
// ['-m', 'igor', 'myapp.api:API', '--port', '0'] instead). In a packaged app:
// the same server frozen by freeze.py (PyInstaller, one folder), which the
// packager copied beside app.asar as resources/igor-backend/ (README.md,
// "Packaging"): an executable is spawned directly, with no Python installed.
const REPO_ROOT = path.resolve(__dirname, '..', '..');
const PYTHON = process.env.IGOR_PYTHON || (process.platform === 'win32' ? 'python' : 'python3');
const PYTHON_ARGS = ['server_instance.py', '--port', '0'];
const BACKEND_NAME = 'igor-backend';
const EXE = process.platform === 'win32' ? '.exe' : '';

/** What to launch: { command, args, cwd }. IGOR_BACKEND=/path/to/igor-backend tries a frozen one in development. */
function backendCommand() {
  let frozen = process.env.IGOR_BACKEND || null;
  if (!frozen && app.isPackaged) frozen = path.join(process.resourcesPath, BACKEND_NAME, BACKEND_NAME + EXE);
  if (frozen) return { command: frozen, args: ['--port', '0'], cwd: path.dirname(frozen) };
  return { command: PYTHON, args: PYTHON_ARGS, cwd: REPO_ROOT };
}

// The one page allowed to ask for the backend's token.
const RENDERER_FILE = path.join(__dirname, 'renderer', 'index.html');
const RENDERER_URL = pathToFileURL(RENDERER_FILE).href;

/** The running backend (a LaunchedServer), or null. */
let backend = null;
let quitting = false;

async function startBackend() {
  // igor-client is an ES module; a CommonJS main process loads it with import().
  const { launch } = await import('igor-client/node');
  const { command, args, cwd } = backendCommand();
  return launch(command, args, {
    cwd,
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
  // The window shows our page only: no navigating away (a link, a dropped
  // file, a redirect) and no new windows, so no other page ever runs with the
  // preload's bridge to the token.
  win.webContents.on('will-navigate', (event) => event.preventDefault());
  win.webContents.setWindowOpenHandler(() => ({ action: 'deny' }));
  win.loadFile(RENDERER_FILE);
}

/** True if an IPC call comes from our own renderer page (ignoring any #hash or ?query). */
function fromOurPage(event) {
  const url = event.senderFrame && event.senderFrame.url;
  if (!url) return false;
  try {
    const parsed = new URL(url);
    parsed.hash = '';
    parsed.search = '';
    return parsed.href === RENDERER_URL;
  } catch {
    return false;
  }
}

// The renderer asks for the backend's address and token through preload.js.
// The token is never put in a URL or on a command line, where other local
// programs could read it, and only our own page (file://.../renderer/index.html)
// gets it: a frame showing anything else is refused.
ipcMain.handle('igor:config', (event) => {
  if (!fromOurPage(event)) throw new Error('igor:config is only answered to the app\'s own page');
  return backend ? { url: backend.url, token: backend.token } : null;
});

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
