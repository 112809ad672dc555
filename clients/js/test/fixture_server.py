"""A real Igor server for the igor-client tests.

Usage: python3 fixture_server.py [--token TOKEN] [--static DIR] [--debug] [--ping-interval S] [--ping-timeout S]
       [--send-timeout S]

Listens on a free port and prints `IGOR_READY {...}` once listening; shuts
down when its stdin closes (the test process ends or kills it).
"""

import argparse
import hashlib
import os
import queue
import tempfile
import threading

from igor import IgorError, IgorProcess, IgorServer, flatten

# Streams the tests cancel, by tag: set once the handler saw the cancel.
CANCELLED = {}
CANCELLED_LOCK = threading.Lock()


def cancel_event(tag):
    with CANCELLED_LOCK:
        return CANCELLED.setdefault(tag, threading.Event())


def hello(out, data):
    out.send('Hello ' + data['name'])


def echo(out, data):
    out.send(data)


def answer(out, data):
    return data  # a returned value: under protocol 2 it carries the close


def nothing(out, data):
    """Sends no value at all: a call resolves to undefined."""


def blob(out, data):
    """A string of data['size'] characters, to test big downloads."""
    out.send('x' * int(data['size']))


def length(out, data):
    """The length of the string it was given, to test big uploads."""
    out.send(len(data))


def count(out, data):
    """A generator handler: 0 .. n-1."""
    yield from range(int(data['n']))


def slow(out, data):
    """One value every `delay` seconds, up to n; notes a cancel under `tag`."""
    tag = data.get('tag')
    try:
        for i in range(int(data.get('n', 1000))):
            out.send(i)  # raises StreamCancelled once the client cancelled
            if out.wait(float(data.get('delay', 0.05))):
                return
    finally:
        if tag is not None and out.cancelled:
            cancel_event(tag).set()


def was_cancelled(out, data):
    """True once the `slow` stream tagged data['tag'] saw its cancel (waits up to 5 s)."""
    out.send(cancel_event(data['tag']).wait(5.0))


def boom(out, data):
    raise ValueError('nope: ' + str(data))


def teapot(out, data):
    out.send('first')
    out.send_error("I'm a teapot", code=418)


def whoami(out, data, client_id):
    out.send(client_id)


def session_set(out, data, session):
    session[data['key']] = data['value']
    out.send(True)


def session_get(out, data, session):
    out.send(session.get(data['key']))


def chat(out, data):
    """Answers each input line as it arrives ({n, upper}), then {bye: count} once the input ends."""
    n = 0
    for line in out:
        n += 1
        out.send({'n': n, 'upper': str(line).upper()})
    out.send({'bye': n})


def read_one(out, data):
    """Reads one input value, sends it back and returns: later input finds the stream closed."""
    out.send(out.receive(timeout=10))


def hoard(out, data):
    """Never reads its input; returns once the stream is failed or cancelled (or after 10 s)."""
    out.wait(10.0)


def ask_client(out, data, server, client_id):
    """Calls the client's exposed function data['name'] with data['data'] and reports what came back.

    Sends {result} or {raised: exception class name, message, type, code}, and the error's data
    (see shape()) when it carried some.
    """
    try:
        result = server.call_client(client_id, data['name'], data.get('data'), timeout=float(data.get('timeout', 10)))
        if data.get('shape'):
            result = {'result': result, 'shape': shape(result)}
    except IgorError as error:
        out.send({
            'raised': type(error).__name__,
            'message': str(error.args[0]) if error.args else '',
            'type': getattr(error, 'type', None),
            'code': getattr(error, 'code', None),
            **({} if error.data is None else {'data': shape(error.data)}),
        })
    else:
        out.send(result if data.get('shape') else {'result': result})


# ---- binary (protocol 3) -------------------------------------------------------

def shape(value):
    """What Python received, as JSON: bytes become {"bytes": hex}, so a test sees their type and content."""
    if isinstance(value, bytes):
        return {'bytes': value.hex()}
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value]
    if isinstance(value, (bytearray, memoryview)):
        return {'not bytes': type(value).__name__}
    return value


def bin_shape(out, data):
    """The shape of the call's data (see shape())."""
    return shape(data)


def bin_make(out, data):
    """Nested binary values made in Python: bytes, a bytearray, a memoryview."""
    n = int(data.get('n', 4)) if isinstance(data, dict) else 4
    return {'image': bytes(range(n)), 'w': n, 'rows': [bytearray(b'ab'), {'cell': memoryview(b'xyz')}], 'empty': b''}


def bin_yield(out, data):
    """A generator yielding bytes values, bare and nested, then a text one."""
    yield b'\x00\x01'
    yield {'part': b'\xff' * 3, 'i': 1}
    yield 'done'


def bin_inputs(out, data):
    """Reads input until its end, sending back the shape of each value, then returns how many."""
    n = 0
    for item in out:
        n += 1
        out.send(shape(item))
    return {'inputs': n}


def bin_save(out, data):
    """Reads bytes chunks until the end of input into a file (data['path'], else a temp file).

    Sleeps data['delay'] seconds per chunk: a slow handler, for pacing.
    Returns {bytes, chunks, sha256}: what the test compares with what it sent.
    """
    data = data or {}
    delay = float(data.get('delay', 0))
    path = data.get('path')
    digest = hashlib.sha256()
    size = chunks = 0
    with open(path, 'wb') if path else tempfile.TemporaryFile() as handle:  # noqa: SIM115 - closed by this with
        for chunk in out:
            if not isinstance(chunk, bytes):
                raise TypeError('expected bytes, got ' + type(chunk).__name__)
            handle.write(chunk)
            if data.get('hash', True):
                digest.update(chunk)
            size += len(chunk)
            chunks += 1
            if delay and out.wait(delay):
                return None
    return {'bytes': size, 'chunks': chunks, 'sha256': digest.hexdigest()}


def bin_send(out, data):
    """A download by the transfer convention: {"transfer": {size, name, type}}, then chunks.

    data['chunks'] chunks of data['chunk'] bytes.
    Byte i of the whole is i % 251, so the test can check every byte. data['delay']: seconds between chunks.
    A cancel is noted under data['tag'] (see was_cancelled).
    """
    chunk = int(data.get('chunk', 1000))
    count = int(data.get('chunks', 3))
    delay = float(data.get('delay', 0))
    sized = data.get('sized', True)
    size = chunk * count if sized else None
    tag = data.get('tag')
    try:
        out.send({'transfer': {'size': size, 'name': 'pattern.bin', 'type': 'application/octet-stream'}})
        pattern = bytes(i % 251 for i in range(251 * 2 + chunk))
        for index in range(count):
            start = (index * chunk) % 251
            out.send(pattern[start:start + chunk])
            if delay and out.wait(delay):
                return
    finally:
        if tag is not None and out.cancelled:
            cancel_event(tag).set()


def bin_texts(out, data):
    """data['n'] JSON values {"text": "x" * data['size']}: many values holding strings, for the client's bound."""
    text = 'x' * int(data.get('size', 8192))
    for _ in range(int(data['n'])):
        out.send({'text': text})


def bin_file(out, data):
    """out.send_file of a temp file of data['size'] bytes (byte i is i % 251), in data['chunk']-byte chunks."""
    size = int(data['size'])
    with tempfile.NamedTemporaryFile(suffix='.bin') as handle:
        handle.write(bytes(i % 251 for i in range(size)))
        handle.flush()
        out.send_file(handle.name, chunk_size=int(data.get('chunk', 1024 * 1024)), type='application/x-test')


def bin_receive(out, data):
    """out.receive_file into a temp file: returns the byte count and the file's sha256."""
    with tempfile.TemporaryFile() as handle:
        count = out.receive_file(handle)
        handle.seek(0)
        return {'bytes': count, 'sha256': hashlib.sha256(handle.read()).hexdigest()}


def bin_error(out, data):
    """Fails with data holding bytes: data['bytes'] (a list of ints) nested, and a bytearray."""
    raise IgorError('bad frame', data={'frame': bytes(data['bytes']), 'n': [1, bytearray(b'\xff')], 'note': 'x'})


def pid(out, data):
    out.send(os.getpid())


def rss(out, data):
    """This server's resident set size in bytes (VmRSS of /proc/self/status)."""
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith('VmRSS:'):
                out.send(int(line.split()[1]) * 1024)
                return
    out.send(None)


class Inbox(IgorProcess):
    """Answers every input with a push `inbox_echo` {from, data} to its sender."""

    def run(self):
        while not self.stopping:
            item = self.receive(timeout=0.05)
            if item is None:
                continue
            sender, data = item
            try:
                self.output.send('inbox_echo', {'from': sender, 'data': data}, client_id=sender)
            except IgorError:  # the sender left
                pass


class Ticker(IgorProcess):
    """Broadcasts `tick` {n} to every client every 50 ms."""

    def run(self):
        n = 0
        while not self.wait(0.05):
            n += 1
            self.output.send('tick', {'n': n})


class Notifier(IgorProcess):
    """Sends what `notify` asks for, to one client id."""

    requests = queue.Queue()

    def run(self):
        while not self.wait(0.01):
            try:
                request = self.requests.get_nowait()
            except queue.Empty:
                continue
            kind = request.get('kind', 'push')
            try:
                if kind == 'push':
                    self.output.send(request['action'], request.get('data'), client_id=request['client_id'])
                elif kind == 'error':
                    self.output.send_error(RuntimeError(request.get('data', 'failed')), client_id=request['client_id'],
                                           data=request.get('errorData'))
                elif kind == 'finish':
                    self.output.finish(client_id=request['client_id'])
            except Exception:  # an unknown client id: nothing to do
                pass


def wait_gone(out, data, server):
    """True once no connected client has id data['client_id'] (its session parked, or expired); False after 5 s.

    The server notices a dropped connection on its own thread, with no event a
    test can see: this is how a test knows the id is parked.
    """
    for _ in range(500):
        try:
            server.registry.get(data['client_id'])
        except IgorError:
            out.send(True)
            return
        if out.wait(0.01):
            return
    out.send(False)


def notify(out, data, client_id):
    """Ask the notifier process to push to data['client_id'] (default: the caller)."""
    request = dict(data)
    request.setdefault('client_id', client_id)
    Notifier.requests.put(request)
    out.send(True)


API = flatten({
    'hello': hello,
    'echo': echo,
    'answer': answer,
    'nothing': nothing,
    'blob': blob,
    'length': length,
    'boom': boom,
    'teapot': teapot,
    'whoami': whoami,
    'notify': notify,
    'was_cancelled': was_cancelled,
    'chat': chat,
    'read_one': read_one,
    'hoard': hoard,
    'ask_client': ask_client,
    'jobs': {'count': count, 'slow': slow},
    'session': {'set': session_set, 'get': session_get},
    'clients': {'wait_gone': wait_gone},
    'bin': {'shape': bin_shape, 'make': bin_make, 'yield': bin_yield, 'inputs': bin_inputs, 'save': bin_save,
            'send': bin_send, 'texts': bin_texts, 'file': bin_file, 'receive': bin_receive, 'error': bin_error},
    'pid': pid,
    'rss': rss,
})


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--token')
    parser.add_argument('--static')
    parser.add_argument('--debug', action='store_true')
    parser.add_argument('--ping-interval', type=float, default=20.0)
    parser.add_argument('--ping-timeout', type=float, default=20.0)
    parser.add_argument('--send-timeout', type=float, default=10.0)
    args = parser.parse_args()
    server = IgorServer(api=API, config={
        'port': 0,
        'token': args.token or False,
        'static_dir': args.static,
        'ready_line': True,
        'exit_with_parent': True,
        'debug': args.debug,
        'session_timeout': 30.0,
        'ping_interval': args.ping_interval,
        'ping_timeout': args.ping_timeout,
        'send_timeout': args.send_timeout,
    })
    server.add_process('ticker', Ticker())
    server.add_process('notifier', Notifier())
    server.add_process('inbox', Inbox())
    server.run_forever()


if __name__ == '__main__':
    main()
