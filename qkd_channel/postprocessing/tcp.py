"""The classical channel over TCP, between the two KME processes of a link.

Frames are ``length u32 (big-endian) | payload``; a frame longer than ``max_frame`` is
refused before anything is allocated, so a hostile or broken peer cannot make us reserve
gigabytes. TLS is optional (pass an ``ssl.SSLContext``, e.g. with mutual certificates):
confidentiality of post-processing traffic is not needed for QKD security, and integrity
comes from the Wegman-Carter layer on top, but operators often want the link's control
traffic inside their PKI anyway.

``TCPChannel.connect`` dials the peer; ``TCPListener.accept`` waits for it. Timeouts and
socket failures surface as ``ChannelError``, as the :class:`ClassicalChannel` contract says.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading

from qkd_channel.errors import ChannelError

__all__ = ["DEFAULT_MAX_FRAME", "TCPChannel", "TCPListener"]

#: Largest frame accepted by default (sifting of ~10^7 detections fits comfortably).
DEFAULT_MAX_FRAME = 256 * 1024 * 1024
_LENGTH = struct.Struct(">I")


class TCPChannel:
    """One end of a framed TCP connection (thread-safe: one sender and one receiver)."""

    def __init__(self, sock: socket.socket, *, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        if max_frame <= 0 or max_frame >= 1 << 32:
            raise ValueError("max_frame must be positive and fit in 32 bits")
        self._sock = sock
        self._max_frame = max_frame
        self._send_lock = threading.Lock()
        self._receive_lock = threading.Lock()
        self._closed = False

    @classmethod
    def connect(
        cls,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        timeout: float = 10.0,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> TCPChannel:
        """Dial the peer's listener (TLS if ``ssl_context`` is given)."""
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if ssl_context is not None:
                sock = ssl_context.wrap_socket(sock, server_hostname=server_hostname or host)
            sock.settimeout(None)
        except OSError as exc:
            raise ChannelError(f"cannot connect to the peer at {host}:{port}") from exc
        return cls(sock, max_frame=max_frame)

    def send(self, message: bytes) -> None:
        if len(message) > self._max_frame:
            raise ChannelError("message larger than the channel's frame limit")
        with self._send_lock:
            if self._closed:
                raise ChannelError("channel closed")
            try:
                self._sock.sendall(_LENGTH.pack(len(message)) + message)
            except OSError as exc:
                raise ChannelError("sending to the peer failed") from exc

    def receive(self, timeout: float | None = None) -> bytes:
        with self._receive_lock:
            if self._closed:
                raise ChannelError("channel closed")
            try:
                self._sock.settimeout(timeout)
                (length,) = _LENGTH.unpack(self._read(_LENGTH.size))
                if length > self._max_frame:
                    raise ChannelError("peer sent a frame larger than the limit")
                return self._read(length)
            except TimeoutError:
                raise ChannelError("timed out waiting for the peer") from None
            except OSError as exc:
                raise ChannelError("receiving from the peer failed") from exc

    def close(self) -> None:
        self._closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already disconnected
        self._sock.close()

    def __enter__(self) -> TCPChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self, size: int) -> bytes:
        chunks = bytearray()
        while len(chunks) < size:
            chunk = self._sock.recv(min(size - len(chunks), 1 << 20))
            if not chunk:
                raise ChannelError("peer closed the channel")
            chunks += chunk
        return bytes(chunks)


class TCPListener:
    """A listening socket that hands out one :class:`TCPChannel` per accepted peer."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        self._sock = socket.create_server((host, port))
        self._ssl_context = ssl_context
        self._max_frame = max_frame

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` actually bound (``port=0`` picks a free one)."""
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    def accept(self, timeout: float | None = None) -> TCPChannel:
        """Wait for the peer to connect; the TLS handshake (if any) completes here."""
        self._sock.settimeout(timeout)
        try:
            conn, _ = self._sock.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl_context is not None:
                conn.settimeout(timeout)
                conn = self._ssl_context.wrap_socket(conn, server_side=True)
            conn.settimeout(None)
        except TimeoutError:
            raise ChannelError("no peer connected in time") from None
        except OSError as exc:
            raise ChannelError("accepting the peer failed") from exc
        return TCPChannel(conn, max_frame=self._max_frame)

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> TCPListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
