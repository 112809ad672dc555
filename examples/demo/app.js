// The Igor demo window: every feature of Igor on one page, talking to the
// Python side (server_instance.py) over one WebSocket.
//
// The page is served by the Python server itself, so the WebSocket lives at
// the same host and port as the page; the server's token arrives in the
// address's fragment (#token=...), which browsers never send over HTTP, and
// the client reads it from there itself when given no token.
//
// Type-checked (tsc --checkJs, see clients/js/test/typed.test.mjs) against
// api.d.ts, which `python -m igor types server_instance:API` generates.
// @ts-check

import { IgorClient } from './lib/index.js';
import { filesPanel } from './files.js';
import { $, describeError, now, reportError, setBusy, toast } from './ui.js';

// --- identity and connection -------------------------------------------------------

/** A fresh id per window, so that the server can push to this window alone. */
function makeClientId() {
  const bytes = new Uint8Array(4);
  crypto.getRandomValues(bytes);
  return 'window-' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

const clientId = makeClientId();
const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/`;

$('client-id').textContent = clientId;
$('session-client-id').textContent = clientId;
$('server-host').textContent = location.host;

/** @type {IgorClient<import('./api').Api>} */
const igor = new IgorClient(url, { clientId, reconnect: true });

// Expose the client for a developer's console (and for end-to-end tests).
/** @type {any} */ (window).igor = igor;

// --- connection status and the lost-connection banner ------------------------------

let everConnected = false;

const STATUS_TEXT = {
  connecting: 'Connecting…',
  open: 'Connected',
  reconnecting: 'Reconnecting…',
  closed: 'Offline',
};

/** Show one of the client's statuses: 'connecting' | 'open' | 'reconnecting' | 'closed'. */
function showConnection(status) {
  $('status').dataset.state = status;
  $('status-text').textContent = STATUS_TEXT[status] || status;
  const banner = $('connection-banner');
  if (status === 'open' || status === 'connecting') {
    banner.hidden = status === 'open' ? true : banner.hidden;
    return;
  }
  let text;
  if (status === 'closed') text = 'The connection to the Python backend is closed. Reload the window to try again.';
  else if (everConnected) text = 'The connection to the Python backend was lost. Reconnecting…';
  else text = 'Cannot reach the Python backend. Retrying… (open this window with the link the server printed)';
  $('connection-banner-text').textContent = text;
  banner.hidden = false;
}

let lastStatus = null;
function onStatus(status) {
  if (status === lastStatus) return;
  lastStatus = status;
  const wasConnected = everConnected;
  if (status === 'open') everConnected = true;
  showConnection(status);
  if (status === 'open') {
    // After a reconnect the server may have restarted: reload what it owns.
    void refreshEvents();
    void refreshWhoami();
    if (wasConnected) toast('Reconnected to the Python backend');
  }
}
igor.onStatus((event) => onStatus(event.status));
onStatus(igor.status);

// --- hello: a call --------------------------------------------------------------------

$('hello-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const button = $('hello-submit');
  const result = $('hello-result');
  setBusy(button, true);
  try {
    const greeting = await igor.call('hello', { name: $('hello-name').value.trim() });
    result.textContent = greeting;
    result.classList.remove('muted');
  } catch (error) {
    result.textContent = '';
    reportError('Hello failed', error);
  } finally {
    setBusy(button, false);
    void refreshWhoami();
  }
});

// --- jobs.run: a stream with progress and cancel -------------------------------------

let job = null; // { stream, cancelled }

function showJob(state, text, percent) {
  $('job-status').dataset.state = state;
  $('job-status').textContent = text;
  $('job-progress').dataset.state = state;
  if (percent !== undefined) {
    const p = Math.max(0, Math.min(100, Math.round(percent)));
    $('job-progress-bar').style.width = `${p}%`;
    $('job-progress').setAttribute('aria-valuenow', String(p));
    $('job-percent').textContent = `${p}%`;
  }
  const running = state === 'running' || state === 'starting' || state === 'waiting';
  $('job-start').disabled = running;
  $('job-cancel').disabled = !running;
}

$('job-start').addEventListener('click', () => {
  if (job) return;
  const steps = Math.max(1, Math.min(1000, Number($('job-steps').value) || 20));
  // With "Ask me halfway", the Python job calls this window's exposed `confirm` (below) after that step.
  const confirmAt = $('job-confirm').checked && steps > 1 ? Math.ceil(steps / 2) : undefined;
  showJob('starting', 'Starting…', 0);
  let last = 0;
  let stopped = null;
  const current = { stream: igor.stream('jobs.run', { steps, delay: 0.2, confirm_at: confirmAt }), cancelled: false };
  job = current;
  current.stream.subscribe({
    next(progress) {
      last = progress.percent;
      if (progress.stopped) {
        stopped = `Stopped after step ${progress.step}: ${progress.stopped}`;
        showJob('stopped', stopped, progress.percent);
      } else if (progress.waiting) {
        showJob('waiting', `Step ${progress.step} of ${progress.total}: waiting for your answer…`, progress.percent);
      } else {
        showJob('running', `Step ${progress.step} of ${progress.total}`, progress.percent);
      }
    },
    error(error) {
      if (job !== current) return;
      job = null;
      if (current.cancelled || isCancellation(error)) {
        showJob('cancelled', `Cancelled at ${Math.round(last)}%`, last);
      } else {
        showJob('error', `Failed: ${describeError(error).message}`, last);
      }
    },
    complete() {
      if (job !== current) return;
      job = null;
      if (current.cancelled) showJob('cancelled', `Cancelled at ${Math.round(last)}%`, last);
      else if (stopped) showJob('stopped', stopped, last);
      else showJob('done', 'Done', 100);
    },
  });
});

function isCancellation(error) {
  return Boolean(error && (error.cancelled || error.name === 'AbortError' || error.type === 'Cancelled'));
}

$('job-cancel').addEventListener('click', () => {
  if (!job) return;
  const current = job;
  current.cancelled = true;
  $('job-cancel').disabled = true;
  $('job-status').textContent = 'Cancelling…';
  // A question the job is waiting on is answered "stop", so the Python side stops waiting too.
  answerDialog(false);
  current.stream.cancel();
});

// --- confirm: a function Python calls in this window ----------------------------------

// One question at a time; `answerDialog` settles the one shown.
let settleDialog = null;

function answerDialog(answer) {
  if (!settleDialog) return;
  const settle = settleDialog;
  settleDialog = null;
  settle(answer);
}

const dialog = $('confirm-dialog');
// The dialog's buttons close it with their value; Escape closes it with none (a "stop").
dialog.addEventListener('close', () => answerDialog(dialog.returnValue === 'yes'));

/** Show `question` and resolve with true (Continue) or false (Stop, Escape); give up when `signal` aborts. */
function askUser(question, signal) {
  answerDialog(false); // a newer question replaces an unanswered one
  return new Promise((resolve, reject) => {
    settleDialog = resolve;
    $('confirm-question').textContent = question;
    dialog.returnValue = '';
    dialog.showModal();
    signal.addEventListener(
      'abort',
      () => {
        // The server stopped waiting (its timeout passed) or the connection dropped: no answer goes back.
        if (settleDialog !== resolve) return;
        settleDialog = null;
        dialog.close();
        toast('The job stopped waiting for an answer', 'error');
        reject(signal.reason);
      },
      { once: true },
    );
  }).finally(() => {
    // Unless a newer question is already showing in it.
    if (dialog.open && !settleDialog) dialog.close();
  });
}

igor.expose(
  'confirm',
  /** @param {{ question?: string } | null} data @param {AbortSignal} signal */
  (data, signal) => askUser(String(data?.question ?? 'Continue?'), signal),
);

// --- text.live: the typing streams into an open call ----------------------------------

let live = null; // the open text.live stream, while its input is open

function showLive(stats) {
  $('live-words').textContent = String(stats.words);
  $('live-chars').textContent = String(stats.chars);
  $('live-echo').textContent = stats.upper;
}

/** The open text.live call, opened on the first change (and again after Finish or a lost connection). */
function liveStream() {
  if (live && !live.inputClosed) return live;
  const stream = igor.stream('text.live');
  live = stream;
  $('live-finish').disabled = false;
  $('live-state').textContent = 'Streaming your typing…';
  stream.subscribe({
    next(stats) {
      showLive(stats);
      if (stats.final) $('live-state').textContent = `Finished: ${stats.words} words`;
    },
    error(error) {
      if (live === stream) live = null;
      $('live-finish').disabled = true;
      $('live-state').textContent = `Stopped (${describeError(error).message}); type to start again`;
    },
    complete() {
      if (live === stream) live = null;
    },
  });
  return stream;
}

$('live-input').addEventListener('input', () => liveStream().send($('live-input').value));

$('live-finish').addEventListener('click', () => {
  $('live-finish').disabled = true;
  if (!live) return;
  $('live-state').textContent = 'Finishing…';
  live.end(); // the handler's `for text in out` loop ends and it sends its final answer
});

// --- counter_process: a push to every window ------------------------------------------

let counterTicks = 0;
igor.on('counter_increment', (/** @type {{ counter: number }} */ data) => {
  const value = $('counter-value');
  value.textContent = String(data.counter);
  value.classList.remove('bump');
  void value.offsetWidth; // restart the animation
  value.classList.add('bump');
  counterTicks += 1;
  $('counter-note').textContent = `updated ${now()}`;
  value.dataset.ticks = String(counterTicks);
});

// --- notify.me: a push to this window only --------------------------------------------

igor.on('notification', (/** @type {{ text: string }} */ data) => {
  const item = document.createElement('li');
  item.setAttribute('data-testid', 'notification');
  const time = document.createElement('time');
  time.textContent = now();
  const text = document.createElement('span');
  text.textContent = data.text;
  item.append(time, text);
  $('notifications').prepend(item);
  while ($('notifications').children.length > 5) $('notifications').lastElementChild.remove();
  $('notify-state').textContent = 'Delivered to this window only.';
});

$('notify-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const button = $('notify-submit');
  setBusy(button, true);
  try {
    await igor.call('notify.me', { text: $('notify-text').value.trim(), delay: 1 });
    $('notify-state').textContent = 'Scheduled: it arrives in a second…';
  } catch (error) {
    reportError('Could not schedule the notification', error);
  } finally {
    setBusy(button, false);
    void refreshWhoami();
  }
});

// --- events.*: shared server state ----------------------------------------------------

function renderEvents(events) {
  const list = $('events-list');
  list.replaceChildren(
    ...events.map((ev) => {
      const item = document.createElement('li');
      item.dataset.id = String(ev.id);
      item.setAttribute('data-testid', 'event');
      const id = document.createElement('span');
      id.className = 'event-id';
      id.textContent = `#${ev.id}`;
      const title = document.createElement('span');
      title.className = 'event-title';
      title.textContent = ev.title;
      const remove = document.createElement('button');
      remove.type = 'button';
      remove.className = 'icon';
      remove.textContent = 'Remove';
      remove.setAttribute('aria-label', `Remove ${ev.title}`);
      remove.setAttribute('data-testid', 'event-remove');
      remove.addEventListener('click', () => removeEvent(ev.id, remove));
      item.append(id, title, remove);
      return item;
    }),
  );
  $('events-empty').hidden = events.length > 0;
}

async function refreshEvents() {
  try {
    renderEvents(await igor.call('events.list'));
  } catch (error) {
    reportError('Could not load the events', error);
  }
}

async function removeEvent(id, button) {
  button.disabled = true;
  try {
    await igor.call('events.remove', { id });
  } catch (error) {
    // Most likely another window removed it first: say so, then show the truth.
    reportError('Could not remove the event', error);
  }
  await refreshEvents();
}

$('events-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const input = $('events-title-input');
  const title = input.value.trim();
  if (!title) return;
  const button = $('events-add');
  setBusy(button, true);
  try {
    await igor.call('events.create', { title });
    input.value = '';
  } catch (error) {
    reportError('Could not add the event', error);
  } finally {
    setBusy(button, false);
  }
  await refreshEvents();
});

$('events-refresh').addEventListener('click', () => void refreshEvents());

// --- fail: an error shown politely ----------------------------------------------------

$('fail-button').addEventListener('click', async () => {
  const button = $('fail-button');
  setBusy(button, true);
  $('error-box').hidden = true;
  try {
    await igor.call('fail');
  } catch (error) {
    const { message, detail } = describeError(error);
    $('error-message').textContent = message;
    $('error-detail').textContent = detail ? `The Python side raised ${detail}.` : '';
    $('error-box').hidden = false;
  } finally {
    setBusy(button, false);
  }
});

// --- whoami: the server-side session of this window ----------------------------------

async function refreshWhoami() {
  try {
    const me = await igor.call('whoami');
    $('whoami').textContent = String(me.calls);
    $('session-client-id').textContent = String(me.client_id);
  } catch {
    // Purely informative: say nothing when it fails.
  }
}

$('whoami-button').addEventListener('click', () => void refreshWhoami());

// --- binary: a picture made in Python, a file uploaded from the page ------------------

filesPanel(igor);
