// The page: a plain browser page using igor-client. It gets the backend's url
// and token from the preload bridge (window.igorBackend), never from Node.
//
// The path below works when igor-client is installed with `npm install` in
// examples/electron (a symlink to clients/js, built to clients/js/dist). A
// bundled app would `import { IgorClient } from 'igor-client'` instead.
import { IgorClient } from '../node_modules/igor-client/dist/index.js';

const $ = (id) => document.getElementById(id);

const config = await window.igorBackend.config();
if (!config) throw new Error('the Python backend is not running');

const igor = new IgorClient(config.url, { token: config.token, clientId: 'electron-main-window', reconnect: true });

try {
  await igor.ready;
  $('status').textContent = `Connected to ${config.url}`;
} catch (error) {
  $('status').textContent = `Cannot reach the Python backend: ${error.message}`;
  $('status').className = 'error';
}

$('hello-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  try {
    $('greeting').textContent = await igor.call('hello', { name: $('name').value });
    $('greeting').className = '';
  } catch (error) {
    $('greeting').textContent = `Sorry, that failed: ${error.message}`;
    $('greeting').className = 'error';
  }
});

let job = null; // { stream, cancelled }
$('job-start').addEventListener('click', () => {
  const stream = igor.stream('jobs.run', { steps: 30, delay: 0.1 });
  const current = { stream, cancelled: false };
  job = current;
  $('job-start').disabled = true;
  $('job-cancel').disabled = false;
  const finish = (text) => {
    job = null;
    $('job-text').textContent = text;
    $('job-start').disabled = false;
    $('job-cancel').disabled = true;
  };
  stream.subscribe({
    next: (p) => {
      $('job-progress').value = p.percent;
      $('job-text').textContent = `Step ${p.step} of ${p.total}`;
    },
    error: (error) => finish(`Stopped: ${error.message}`),
    // cancel() ends the stream with complete(): the flag tells the two apart.
    complete: () => finish(current.cancelled ? 'Cancelled' : 'Done'),
  });
});
$('job-cancel').addEventListener('click', () => {
  if (!job) return;
  job.cancelled = true;
  job.stream.cancel();
});

igor.on('counter_increment', (data) => {
  $('counter').textContent = String(data.counter);
});
