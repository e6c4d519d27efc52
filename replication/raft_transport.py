"""pysyncobj's TCP transport, hardened for a port that strangers can reach (issue 13, item 7).

pysyncobj 0.3.17 (pinned) reads the Raft port like this: a frame is a native 4-byte signed
length and that many bytes; every connection buffers whole frames before anything is checked,
an accepted connection that never says anything stays open forever (its timeout is checked
only when the socket has an event), and one failed ``accept()`` (EMFILE, ECONNABORTED) unbinds
the listener for good. This module subclasses its three classes (no fork) so that:

* **frames are bounded before they are buffered**: after every ``recv`` the length prefixes
  of the frames in the read buffer are checked; a prefix below 1 or above ``max_frame_bytes``
  closes the connection, so a frame announced as 2 GiB costs at most one receive buffer.
  The largest legitimate frame is one ``append_entries`` of at most two journal entries of up
  to ``appendEntriesBatchSizeBytes`` (64 KiB; a larger entry and a snapshot are sent in chunks
  of that size), compressed and Fernet-encrypted (4/3 base64): about 180 KiB, far below the
  8 MiB default.
* **unauthenticated connections have a deadline**: an accepted connection that has not
  completed the handshake (key exchange, then its node address) within
  ``handshake_timeout_s`` is closed (so is an outgoing one whose peer never answers the key
  exchange: it is retried instead of hanging), and at most ``max_pending_connections`` such
  connections are kept (the oldest is closed for a newer one: idle strangers cannot crowd out
  peers).
  pysyncobj's admin utility (``syncobj_admin``) talks on such connections too, so it gets the
  same deadline.
* **accept errors never close the listener**: an error other than EAGAIN is logged (rate
  limited) and the listener stops polling for ``accept_retry_s`` (a level-triggered poll would
  otherwise spin while the process has no free descriptor), then resumes; the waiting peers stay
  in the kernel's backlog. An error event on the listening socket rebinds it after the pause.
  An outgoing ``connect`` that cannot create a socket (EMFILE) counts as a failed attempt
  instead of raising out of pysyncobj's tick.

Threading: everything here runs on pysyncobj's tick thread (poller callbacks and the tick
callback), like the classes it extends. The name-mangled methods overridden below
(``_TcpConnection__processRead`` ...) are the hooks pysyncobj's code calls by those names.
"""

from __future__ import annotations

import errno
import functools
import logging
import socket
import struct
from dataclasses import dataclass
from typing import Any

from pysyncobj.monotonic import monotonic as monotonic_time
from pysyncobj.poller import POLL_EVENT_TYPE
from pysyncobj.tcp_connection import CONNECTION_STATE, TcpConnection
from pysyncobj.tcp_server import TcpServer
from pysyncobj.transport import TCPTransport

log = logging.getLogger(__name__)

_LENGTH = struct.Struct("i")  # pysyncobj's prefix: native byte order, signed
_WOULD_BLOCK = (errno.EAGAIN, errno.EWOULDBLOCK)


@dataclass(frozen=True, slots=True)
class RaftPortLimits:
    """The hardening limits of one node's Raft port (``tuning.raft_*`` in the config)."""

    max_frame_bytes: int = 8 * 1024 * 1024
    """Largest frame (after the 4-byte prefix) a connection accepts before buffering it."""
    handshake_timeout_s: float = 5.0
    """How long an accepted connection may take to authenticate and name its node."""
    max_pending_connections: int = 32
    """Accepted connections still in the handshake kept at once (the oldest goes first)."""
    accept_retry_s: float = 0.1
    """Pause of the listener after an accept error (EMFILE ...) before it accepts again."""


class RateLimitedLog:
    """Logs at most one line per ``interval_s`` per key, with the count of the suppressed ones.

    For errors an attacker or an exhausted resource can repeat thousands of times a second.
    One thread only (pysyncobj's tick thread here).
    """

    def __init__(self, interval_s: float = 10.0) -> None:
        self._interval_s = interval_s
        self._next: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, message: str, *args: object) -> bool:
        """Log ``message % args`` unless ``key`` was logged in the last interval; returns
        whether it logged."""
        now = monotonic_time()
        if now < self._next.get(key, 0.0):
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        self._next[key] = now + self._interval_s
        suppressed = self._suppressed.pop(key, 0)
        suffix = f" ({suppressed} more since the last report)" if suppressed else ""
        log.warning(message + suffix, *args)
        return True


_reports = RateLimitedLog()


def first_bad_frame(buffer: bytes, start: int, max_frame_bytes: int) -> tuple[int, int | None]:
    """Check the frame prefixes of ``buffer`` from the frame header at ``start``.

    Returns ``(next_start, bad_length)``: ``next_start`` is the offset of the first frame header
    not yet checked completely (an incomplete frame's header is checked again when more bytes
    arrive, which is cheap); ``bad_length`` is the first announced length out of
    ``1..max_frame_bytes``, or None. Pure.
    """
    position = start
    while len(buffer) - position >= _LENGTH.size:
        (length,) = _LENGTH.unpack_from(buffer, position)
        if length < 1 or length > max_frame_bytes:
            return position, length
        end = position + _LENGTH.size + length
        if end > len(buffer):
            break
        position = end
    return position, None


class HardenedConnection(TcpConnection):  # type: ignore[misc]  # pysyncobj is untyped
    """A :class:`TcpConnection` that refuses oversized frames before buffering them and that
    survives a ``connect`` without free descriptors. Tick thread only."""

    def __init__(self, *args: Any, max_frame_bytes: int, **kwargs: Any) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.opened_at = monotonic_time()
        self._checked = 0  # offset in the read buffer of the next frame header to check
        super().__init__(*args, **kwargs)

    def connect(self, host: str, port: int) -> bool:
        self._checked = 0
        self.opened_at = monotonic_time()
        try:
            return bool(super().connect(host, port))
        except OSError as exc:  # EMFILE/ENFILE/ENOBUFS creating the socket: try again later
            _reports.warning("connect", "raft: cannot connect to %s:%s: %s", host, port, exc)
            sock: socket.socket | None = getattr(self, "_TcpConnection__socket", None)
            if sock is not None:
                sock.close()
                self._TcpConnection__socket = None
            self._TcpConnection__fileno = None
            return False

    def _TcpConnection__processRead(self) -> bool:
        more = bool(TcpConnection._TcpConnection__processRead(self))
        if self.state == CONNECTION_STATE.DISCONNECTED:
            self._checked = 0
            return False
        self._checked, bad = first_bad_frame(
            self._TcpConnection__readBuffer, self._checked, self.max_frame_bytes
        )
        if bad is not None:
            _reports.warning(
                "frame",
                "raft: closing a connection that announced a frame of %d bytes (limit %d)",
                bad,
                self.max_frame_bytes,
            )
            self.disconnect()
            self._checked = 0
            return False
        return more

    def _TcpConnection__processParseMessage(self) -> Any:
        before = len(self._TcpConnection__readBuffer)
        message = TcpConnection._TcpConnection__processParseMessage(self)
        consumed = before - len(self._TcpConnection__readBuffer)
        self._checked = max(0, self._checked - consumed)
        if self.state == CONNECTION_STATE.DISCONNECTED:
            self._checked = 0
        return message


class HardenedServer(TcpServer):  # type: ignore[misc]  # pysyncobj is untyped
    """A :class:`TcpServer` whose listener survives accept errors. Tick thread only."""

    def __init__(self, *args: Any, limits: RaftPortLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.resume_at: float | None = None  # paused until then (monotonic), else None
        self._rebind = False
        self.accept_errors = 0

    def _TcpServer__onNewConnection(self, descr: int, event: int) -> None:
        if event & POLL_EVENT_TYPE.READ:
            self._accept_one()
        if event & POLL_EVENT_TYPE.ERROR and self.resume_at is None:
            _reports.warning("listen", "raft: error event on the listening socket; rebinding")
            self._rebind = True
            self._pause()

    def _accept_one(self) -> None:
        try:
            sock, _addr = self._TcpServer__socket.accept()
        except OSError as exc:
            if exc.errno in _WOULD_BLOCK:
                return
            self.accept_errors += 1
            _reports.warning(
                "accept",
                "raft: accept failed (%s); pausing the listener for %.2f s",
                exc,
                self.limits.accept_retry_s,
            )
            self._pause()
            return
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._TcpServer__sendBufferSize)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._TcpServer__recvBufferSize)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            conn = HardenedConnection(
                poller=self._TcpServer__poller,
                socket=sock,
                timeout=self._TcpServer__connectionTimeout,
                sendBufferSize=self._TcpServer__sendBufferSize,
                recvBufferSize=self._TcpServer__recvBufferSize,
                keepalive=self._TcpServer__keepalive,
                max_frame_bytes=self.limits.max_frame_bytes,
            )
        except OSError as exc:  # the peer reset it already, or the poller is out of room
            _reports.warning("accept", "raft: dropping an accepted connection: %s", exc)
            sock.close()
            return
        self._TcpServer__onNewConnectionCallback(conn)

    def _pause(self) -> None:
        """Stop polling the listener until ``resume_at`` (see :meth:`resume_if_due`)."""
        self.resume_at = monotonic_time() + self.limits.accept_retry_s
        fileno = self._TcpServer__fileno
        if self._rebind:
            self.unbind()
        elif fileno is not None:
            self._TcpServer__poller.unsubscribe(fileno)

    def resume_if_due(self) -> None:
        """Tick: poll the listener again (rebinding it if its socket failed) once the pause
        is over; a failed rebind pauses again."""
        if self.resume_at is None or monotonic_time() < self.resume_at:
            return
        self.resume_at = None
        if self._rebind:
            try:
                self.bind()
            except OSError as exc:
                _reports.warning("listen", "raft: cannot rebind the listener: %s", exc)
                self._pause()
                return
            self._rebind = False
            return
        fileno = self._TcpServer__fileno
        if fileno is not None:
            self._TcpServer__poller.subscribe(
                fileno,
                self._TcpServer__onNewConnection,
                POLL_EVENT_TYPE.READ | POLL_EVENT_TYPE.ERROR,
            )


class HardenedTransport(TCPTransport):  # type: ignore[misc]  # pysyncobj is untyped
    """:class:`TCPTransport` with the limits of the module docstring. Pass it to ``SyncObj``
    as ``transportClass=functools.partial(HardenedTransport, limits=...)``. Tick thread only."""

    def __init__(self, sync_obj: Any, self_node: Any, other_nodes: Any, *, limits: RaftPortLimits):
        self.limits = limits  # before super().__init__: it creates the server and connections
        self.handshake_timeouts = 0
        super().__init__(sync_obj, self_node, other_nodes)

    def _createServer(self) -> None:
        super()._createServer()
        # pysyncobj built a plain server (resolving the bind address); rebuilt here.
        plain: Any = getattr(self, "_server")  # noqa: B009 - mypy cannot type the attribute
        conf = self._syncObj.conf
        self._server = HardenedServer(
            self._syncObj._poller,
            plain._TcpServer__host,
            plain._TcpServer__port,
            onNewConnection=self._onNewIncomingConnection,
            sendBufferSize=conf.sendBufferSize,
            recvBufferSize=conf.recvBufferSize,
            connectionTimeout=conf.connectionTimeout,
            limits=self.limits,
        )

    def addNode(self, node: Any) -> None:
        super().addNode(node)
        plain = self._connections.get(node)
        if plain is None or isinstance(plain, HardenedConnection):
            return
        conf = self._syncObj.conf
        conn = HardenedConnection(
            poller=self._syncObj._poller,
            timeout=conf.connectionTimeout,
            sendBufferSize=conf.sendBufferSize,
            recvBufferSize=conf.recvBufferSize,
            keepalive=conf.tcp_keepalive,
            max_frame_bytes=self.limits.max_frame_bytes,
        )
        conn.encryptor = self._syncObj.encryptor
        conn.setOnConnectedCallback(functools.partial(self._onOutgoingConnected, conn))
        conn.setOnMessageReceivedCallback(functools.partial(self._onMessageReceived, node))
        conn.setOnDisconnectedCallback(functools.partial(self._onDisconnected, conn))
        self._connections[node] = conn  # the plain one never connected: nothing to close

    def _onNewIncomingConnection(self, conn: Any) -> None:
        super()._onNewIncomingConnection(conn)
        pending = [c for c in self._unknownConnections if isinstance(c, HardenedConnection)]
        if len(pending) > self.limits.max_pending_connections:
            oldest = min(pending, key=lambda c: c.opened_at)
            _reports.warning(
                "pending",
                "raft: more than %d connections in the handshake; closing the oldest",
                self.limits.max_pending_connections,
            )
            self._drop_unknown(oldest)

    def _onTick(self) -> None:
        super()._onTick()
        if isinstance(self._server, HardenedServer):
            self._server.resume_if_due()
        deadline = monotonic_time() - self.limits.handshake_timeout_s
        for conn in list(self._unknownConnections):
            if isinstance(conn, HardenedConnection) and conn.opened_at < deadline:
                self.handshake_timeouts += 1
                _reports.warning(
                    "handshake",
                    "raft: closing a connection that did not authenticate within %.1f s",
                    self.limits.handshake_timeout_s,
                )
                self._drop_unknown(conn)
        if self._syncObj.encryptor is None:
            return
        for conn in list(self._connections.values()):  # ours to peers: key exchange pending
            if (
                isinstance(conn, HardenedConnection)
                and conn.state != CONNECTION_STATE.DISCONNECTED
                and not conn.sendRandKey
                and conn.opened_at < deadline
            ):
                _reports.warning(
                    "handshake-out",
                    "raft: a peer did not answer the handshake within %.1f s; reconnecting",
                    self.limits.handshake_timeout_s,
                )
                conn.disconnect()

    def _drop_unknown(self, conn: Any) -> None:
        self._unknownConnections.discard(conn)
        conn.disconnect()
