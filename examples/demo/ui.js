// The demo page's small UI helpers: elements by id, toasts, readable errors, busy buttons.
// @ts-check

/** @type {(id: string) => any} The page's elements, left untyped: the checks are for the calls. */
export const $ = (id) => document.getElementById(id);

export function now() {
  return new Date().toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/** A short-lived message in the corner; kind 'error' for failures. */
export function toast(text, kind = 'info') {
  const el = document.createElement('div');
  el.className = kind === 'error' ? 'toast toast-error' : 'toast';
  el.textContent = text;
  el.setAttribute('data-testid', kind === 'error' ? 'toast-error' : 'toast');
  el.title = 'Click to dismiss';
  el.addEventListener('click', () => el.remove());
  $('toasts').append(el);
  setTimeout(() => el.remove(), kind === 'error' ? 8000 : 5000);
}

/** Text a person can read for any error the client hands us. */
export function describeError(error) {
  if (error && typeof error === 'object') {
    const message = error.message || String(error);
    const bits = [];
    if (error.type) bits.push(error.type);
    if (error.code !== undefined && error.code !== null) bits.push(`code ${error.code}`);
    return { message, detail: bits.join(' · ') };
  }
  return { message: String(error), detail: '' };
}

/** Errors a person did not ask to see (a lost connection) become a toast. */
export function reportError(context, error) {
  const { message } = describeError(error);
  toast(`${context}: ${message}`, 'error');
}

export function setBusy(button, busy) {
  button.disabled = busy;
  button.setAttribute('aria-busy', busy ? 'true' : 'false');
}
