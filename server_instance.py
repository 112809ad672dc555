"""Igor's demo app: a small desktop-style UI served by an Igor server.

    python server_instance.py            # then open the address it prints

It uses every feature of the library: plain calls, a streaming job that can
be cancelled and that asks the window to confirm a step (a call from Python
into the page), a handler reading the user's typing as it streams in, shared
state in ``scope``, per-client ``session``, a process broadcasting to
everyone, a process sending to one client id, errors, binary (a picture made
in Python and drawn in a canvas, a file uploaded from the page in paced
chunks), and a ``shutdown`` action. The page lives in examples/demo/.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import sys
import tempfile
import threading
from typing import Dict, Iterator, List, Optional, TypedDict, Union

from igor import CallTimeout, IgorError, IgorProcess, IgorServer, UnknownClient, flatten
from igor.lifecycle import stdin_is_pipe

DEMO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "examples", "demo")


# The shapes of the actions' data and values: `python -m igor types server_instance:API`
# turns them into examples/demo/api.d.ts, which the page is type-checked against.
class Greeting(TypedDict, total=False):
    name: str


class JobOptions(TypedDict, total=False):
    steps: int
    delay: float
    confirm_at: int


class Progress(TypedDict):
    step: int
    total: int
    percent: int


class JobStep(Progress, total=False):
    waiting: bool
    stopped: str


class TextStats(TypedDict):
    words: int
    chars: int
    upper: str


class LiveText(TextStats, total=False):
    final: bool


class EventItem(TypedDict):
    id: int
    title: str


class NewEvent(TypedDict):
    title: str


class EventRef(TypedDict):
    id: int


class NotifyRequest(TypedDict, total=False):
    text: str
    delay: float


class PictureRequest(TypedDict, total=False):
    width: int
    height: int
    seed: int


class Picture(TypedDict):
    width: int
    height: int
    seed: int
    pixels: bytes  # RGBA, row by row: what a canvas's putImageData takes


class UploadInfo(TypedDict, total=False):
    name: str


class Saved(TypedDict):
    name: str
    bytes: int


class Me(TypedDict):
    client_id: Union[str, int, None]
    calls: int


def hello(out, data: Optional[Greeting], **kwargs) -> str:
    name = (data or {}).get("name") or "stranger"
    return "Hello " + str(name)


def run_job(out, data: Optional[JobOptions], server, client_id, **kwargs) -> Iterator[JobStep]:
    """A long job: one progress value per step, until done or cancelled.

    With ``confirm_at``, the job stops after that step and asks the window
    (its exposed ``confirm``) whether to go on, waiting up to a minute.
    """
    data = data or {}
    steps = int(data.get("steps", 20))
    delay = float(data.get("delay", 0.2))
    confirm_at = int(data["confirm_at"]) if data.get("confirm_at") is not None else None
    if not 1 <= steps <= 1000 or not 0 <= delay <= 10:
        raise ValueError("steps must be 1..1000 and delay 0..10 seconds")
    for step in range(1, steps + 1):
        if out.wait(delay):  # True as soon as the client cancels
            return
        progress: JobStep = {"step": step, "total": steps, "percent": round(100 * step / steps)}
        yield progress
        if step == confirm_at and step < steps:
            yield {**progress, "waiting": True}
            question = f"Step {step} of {steps} is done. Run the remaining {steps - step}?"
            try:
                go_on = server.call_client(client_id, "confirm", {"question": question, "step": step}, timeout=60)
            except CallTimeout:
                yield {**progress, "stopped": "nobody answered within a minute"}
                return
            except IgorError as error:  # the window failed to ask, or left
                yield {**progress, "stopped": f"the window could not ask: {error}"}
                return
            if go_on is not True:
                yield {**progress, "stopped": "you chose to stop"}
                return


def live_text(out, data: None, **kwargs) -> Iterator[LiveText]:
    """Reads the text as the user types it (one input per change) and answers each with its statistics."""
    last = ""
    for text in out:  # ends when the page ends its input (or goes away)
        last = str(text)[:10_000]
        yield {"words": len(last.split()), "chars": len(last), "upper": last.upper()}
    yield {"words": len(last.split()), "chars": len(last), "upper": last.upper(), "final": True}


def make_picture(out, data: Optional[PictureRequest], **kwargs) -> Picture:
    """An RGBA gradient made with pure Python bytes, sent as binary (no base64, no image format).

    Pixel (x, y) is (x * 255 // (w - 1), y * 255 // (h - 1), seed * 40 % 256, 255): the page
    draws it with putImageData, and the end-to-end test checks pixels against this formula.
    """
    data = data or {}
    width = int(data.get("width", 256))
    height = int(data.get("height", 128))
    seed = int(data.get("seed", 0))
    if not (2 <= width <= 2048 and 2 <= height <= 2048):
        raise ValueError("width and height must be 2..2048")
    blue = seed * 40 % 256
    reds = [x * 255 // (width - 1) for x in range(width)]
    pixels = bytearray()
    for y in range(height):
        green = y * 255 // (height - 1)
        pixels += bytes(value for red in reds for value in (red, green, blue, 255))
    return {"width": width, "height": height, "seed": seed, "pixels": bytes(pixels)}


UPLOAD_DIR = tempfile.mkdtemp(prefix="igor-demo-uploads-")


def save_upload(out, data: Optional[UploadInfo], **kwargs) -> Saved:
    """Saves the bytes the page uploads (igor.upload) into a temp folder and counts them.

    The page's chunks are paced by the server's read acknowledgements, so a
    large file never fills this handler's inbox, however slow the disk.
    """
    name = os.path.basename(str((data or {}).get("name") or "upload.bin"))[:100] or "upload.bin"
    with tempfile.NamedTemporaryFile(dir=UPLOAD_DIR, prefix="upload-", suffix="-" + name, delete=False) as target:
        size = out.receive_file(target)
    return {"name": name, "bytes": size}


def _events(scope):
    return scope.setdefault("events", {"next_id": 1, "items": {}, "lock": threading.Lock()})


def list_events(out, data: None, scope, **kwargs) -> List[EventItem]:
    events = _events(scope)
    with events["lock"]:
        return list(events["items"].values())


def create_event(out, data: NewEvent, scope, **kwargs) -> EventItem:
    title = str((data or {}).get("title", "")).strip()
    if not title:
        raise ValueError("an event needs a title")
    events = _events(scope)
    with events["lock"]:
        event = {"id": events["next_id"], "title": title[:200]}
        events["next_id"] += 1
        events["items"][event["id"]] = event
    return event


def remove_event(out, data: EventRef, scope, **kwargs) -> Optional[Dict[str, int]]:
    event_id = (data or {}).get("id")
    events = _events(scope)
    with events["lock"]:
        if events["items"].pop(event_id, None) is None:
            out.send_error(KeyError(f"no event with id {event_id!r}"), code=404)
            return None
    return {"removed": event_id}


def notify_me(out, data: Optional[NotifyRequest], client_id, server, **kwargs) -> Dict[str, bool]:
    data = data or {}
    server.processes["notifier"].schedule(client_id, str(data.get("text", "Hi!")), float(data.get("delay", 1)))
    return {"scheduled": True}


def fail(out, data: None, **kwargs) -> None:
    raise ValueError("This action fails on purpose")


def whoami(out, data: None, client_id, session, **kwargs) -> Me:
    session["calls"] = session.get("calls", 0) + 1
    return {"client_id": client_id, "calls": session["calls"]}


def shutdown(out, data: None, **kwargs) -> None:
    sys.exit(0)


API = {
    "hello": hello,
    "jobs": {"run": run_job},
    "picture": {"make": make_picture},
    "files": {"upload": save_upload},
    "text": {"live": live_text},
    "events": {"list": list_events, "create": create_event, "remove": remove_event},
    "notify": {"me": notify_me},
    "fail": fail,
    "whoami": whoami,
    "shutdown": shutdown,
}


class CounterProcess(IgorProcess):
    """Pushes a counter to every client once a second."""

    def run(self):
        counter = 0
        while not self.wait(1.0):
            counter += 1
            self.output.send("counter_increment", {"counter": counter})


class NotifierProcess(IgorProcess):
    """Sends scheduled notifications to one client id each."""

    def __init__(self):
        super().__init__()
        self._queue = queue.Queue()

    def schedule(self, client_id, text, delay):
        self._queue.put((client_id, text, max(0.0, min(delay, 60.0))))

    def run(self):
        while not self.stopping:
            try:
                client_id, text, delay = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if self.wait(delay):
                return
            try:
                self.output.send("notification", {"text": text, "client_id": client_id}, client_id=client_id)
            except UnknownClient:
                logging.getLogger("igor").info("client %r left before its notification", client_id)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Igor's demo desktop app")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: any free port)")
    parser.add_argument("--no-token", action="store_true", help="do not require a token")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not os.path.isfile(os.path.join(DEMO_DIR, "lib", "index.js")):
        logging.warning("the demo page needs the JS client built first: "
                        "npm --prefix clients/js ci && npm --prefix clients/js run build")
    server = IgorServer(api=flatten(API), config={
        "port": args.port,
        "token": not args.no_token,
        "static_dir": DEMO_DIR,
        "ready_line": True,
        "exit_with_parent": stdin_is_pipe(),
        "logging": {"level": logging.INFO},
    })
    server.add_process("counter_process", CounterProcess())
    server.add_process("notifier", NotifierProcess())
    server.start()
    page = f"http://127.0.0.1:{server.port}/" + (f"#token={server.token}" if server.token else "")
    print(f"Igor demo: open {page}", file=sys.stderr, flush=True)
    server.run_forever()


if __name__ == "__main__":
    main()
