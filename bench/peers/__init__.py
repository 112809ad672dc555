"""Igor side by side with the servers a user would otherwise pick, all in one run.

Peers, each set up the way its users run it, each in a subprocess of its own on
a free loopback port (the child prints ``PORT n`` on stdout and takes commands
on stdin; end of stdin stops it):

- ``websocket-server``: stock ``WebsocketServer`` (0.6.4, what Igor builds on),
  ``message_received`` -> ``send_message`` echo;
- ``websockets``: the asyncio server, ``async for message in ws: await ws.send(message)``;
- ``socketio``: python-socketio ``Server(async_mode='threading')`` served by
  Werkzeug's threaded server (as Flask-SocketIO runs it; WebSocket transport by
  simple-websocket), events answered with acknowledgements (``call()``);
- ``igor``: ``IgorServer(api=flatten({...}), config={...})`` with an ``echo``
  action, a streaming action and an ``IgorProcess`` that broadcasts.

Every latency figure is taken with one client loop for every peer,
websocket-client with its pure-Python UTF-8 check off; Socket.IO's Engine.IO v4
/ Socket.IO v5 framing is spoken by hand over it. Pushed and broadcast messages
are read by a bulk frame reader on the same sockets (see README.md).

Run from the repository root: ``python -m bench.peers`` (3 runs, under 5 minutes
on 2 cores) or ``python -m bench.peers --quick`` (a smoke run, under a minute).

Modules: ``servers`` (the peers, run in the child), ``client`` (one client loop
for every peer), ``workloads``, ``runner`` (the interleaved runs, the command
line), ``report`` (the table, the chart).
"""
