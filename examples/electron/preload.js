// Preload: the only bridge between the sandboxed page and Electron. It
// exposes one function, so the page never gets ipcRenderer (or Node) itself.
'use strict';

const { contextBridge, ipcRenderer } = require('electron');

contextBridge.exposeInMainWorld('igorBackend', {
  /** Resolves to { url, token } of the Python backend, or null if it is not running. */
  config: () => ipcRenderer.invoke('igor:config'),
});
