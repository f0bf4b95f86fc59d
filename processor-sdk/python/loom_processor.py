"""A Loom processor in Python: the framed protocol (4-byte big-endian
length + loom.v1.Envelope) over TCP or Unix sockets with asyncio.

Handlers take (request, result): request is the loom.v1.ProcessRequest,
result a Result to fill. A handler may be a coroutine: requests are
handled concurrently and answered as they finish, up to max_in_flight at
once (past it a request gets a retryable "processor busy" failure).
loom_pb2 is generated from proto/loom.proto at build time
(protoc --python_out) and must be importable."""

import asyncio
import inspect
import signal
import sys

import loom_pb2 as pb

FRAME_MAX = 16 * 1024 * 1024
PROTOCOL_ERROR = 17  # ErrorCode.PROTOCOL


class Result:
    """What a handler builds; mirrors loom.v1.ProcessResult / Failure."""

    def __init__(self):
        self.events = []
        self.aux_state = None
        self.timer = None  # ("timeout", ms) | ("deadline", unix_ms) | ("unset",)
        self.remove = False
        self.response = b""
        self.failure = None  # (reason, retryable)

    def append_event(self, data, format_version=1):
        self.events.append((format_version, bytes(data)))

    def set_aux_state(self, data):
        self.aux_state = bytes(data)

    def set_timer_timeout(self, timeout_ms):
        self.timer = ("timeout", int(timeout_ms))

    def set_timer_deadline(self, deadline_ms):
        self.timer = ("deadline", int(deadline_ms))

    def unset_timer(self):
        self.timer = ("unset",)

    def respond(self, data):
        self.response = bytes(data)

    def fail(self, reason, retryable=False):
        self.failure = (str(reason), bool(retryable))

    def to_reply(self):
        reply = pb.ProcessReply()
        if self.failure is not None:
            reply.failure.reason, reply.failure.retryable = self.failure
            return reply
        res = reply.result
        for fv, data in self.events:
            res.events.add(format_version=fv, data=data)
        if self.aux_state is not None:
            res.aux_state = self.aux_state
            res.set_aux_state = True
        res.response = self.response
        if self.timer is not None and self.timer[0] == "timeout":
            res.action.set_timer.timeout_ms = self.timer[1]
        elif self.timer is not None and self.timer[0] == "deadline":
            res.action.set_timer.deadline_ms = self.timer[1]
        elif self.timer is not None:
            res.action.unset_timer = True
        if self.remove:
            res.action.remove = True
        return reply


def failure_reply(reason, retryable):
    reply = pb.ProcessReply()
    reply.failure.reason = reason
    reply.failure.retryable = retryable
    return reply


class Processor:
    def __init__(self, max_in_flight=1024, max_frame=FRAME_MAX):
        self.handlers = {}
        self.max_in_flight = max_in_flight
        self.max_frame = max_frame
        self.in_flight = 0
        self.tasks = set()
        self.server = None

    def on(self, kind, handler):
        self.handlers[kind] = handler

    async def listen(self, addr):
        if addr.startswith("unix:"):
            self.server = await asyncio.start_unix_server(self._serve, path=addr[5:])
        elif addr.startswith("tcp:"):
            host, _, port = addr[4:].rpartition(":")
            self.server = await asyncio.start_server(self._serve, host.strip("[]"), int(port))
        else:
            raise ValueError("address must be tcp:HOST:PORT or unix:PATH, got %r" % addr)

    def address(self):
        """The bound address, with the real port after tcp:HOST:0."""
        sock = self.server.sockets[0]
        name = sock.getsockname()
        if isinstance(name, tuple):
            host = name[0] if ":" not in name[0] else "[%s]" % name[0]
            return "tcp:%s:%d" % (host, name[1])
        return "unix:%s" % name

    @staticmethod
    def _send(writer, env):
        data = env.SerializeToString()
        writer.write(len(data).to_bytes(4, "big") + data)

    async def _read_envelope(self, reader):
        header = await reader.readexactly(4)
        n = int.from_bytes(header, "big")
        if n > self.max_frame:
            raise ValueError("frame of %d bytes over the limit of %d" % (n, self.max_frame))
        env = pb.Envelope()
        env.ParseFromString(await reader.readexactly(n))
        return env

    async def _serve(self, reader, writer):
        try:
            while True:
                env = await self._read_envelope(reader)
                if env.WhichOneof("body") != "process" or not env.process.HasField("machine"):
                    why = "expected a process request with a machine"
                    err = pb.Envelope(correlation_id=env.correlation_id)
                    err.error.code, err.error.message = PROTOCOL_ERROR, why
                    self._send(writer, err)
                    print("loom-py: closing connection: %s" % why, file=sys.stderr)
                    break
                self._start(env, writer)
        except asyncio.IncompleteReadError:
            pass  # the peer closed
        except Exception as e:  # malformed frame or envelope: this connection only
            print("loom-py: closing connection: %s" % e, file=sys.stderr)
        finally:
            writer.close()

    def _start(self, env, writer):
        if self.in_flight >= self.max_in_flight:
            self._answer(writer, env.correlation_id, failure_reply("processor busy", True))
            return
        self.in_flight += 1
        task = asyncio.ensure_future(self._handle(env, writer))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _handle(self, env, writer):
        try:
            reply = await self._run_handler(env.process)
        finally:
            self.in_flight -= 1
        self._answer(writer, env.correlation_id, reply)

    async def _run_handler(self, req):
        handler = self.handlers.get(req.kind)
        if handler is None:
            name = pb.ProcessKind.Name(req.kind) if req.kind in pb.ProcessKind.values() else str(req.kind)
            return failure_reply("processor has no handler for %s" % name, False)
        result = Result()
        try:
            out = handler(req, result)
            if inspect.isawaitable(out):
                await out
        except Exception as e:  # a bug in the handler repeats on retry: not retryable
            return failure_reply("handler raised %s: %s" % (type(e).__name__, e), False)
        return result.to_reply()

    def _answer(self, writer, cid, reply):
        if writer.is_closing():
            return  # the connection went away: the reply is dropped
        env = pb.Envelope(correlation_id=cid)
        env.process_reply.CopyFrom(reply)
        self._send(writer, env)

    async def run(self, grace_s=5.0):
        """Serves until SIGINT/SIGTERM, then stops accepting and gives the
        requests in flight grace_s seconds to finish."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        self.server.close()
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=grace_s)
