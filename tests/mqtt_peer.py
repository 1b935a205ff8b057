"""The broker's end of one MQTT connection, played by a test on a loopback socket (as paho's own tests do).

It lets a test see the exact bytes a real paho client writes and hand it bytes of its choosing, through
paho's public API only: the client connects to `port` like to any broker.
"""

from __future__ import annotations

import socket

from isowatch import mqtt_wire


class BrokerPeer:
    """Accepts one client at a time, answers its CONNECT, then reads and writes whole packets."""

    def __init__(self, timeout: float = 30.0) -> None:
        self.timeout = timeout  # a wait for bytes that should come, not a timing check
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(timeout)
        self.port: int = self._listener.getsockname()[1]
        self._conn: socket.socket | None = None
        self._reader = mqtt_wire.FrameReader()
        self._received = bytearray()  # this connection's bytes not yet handed out in a frame
        self._frames: list[tuple[mqtt_wire.Frame, bytes]] = []

    def accept(self, *, session_present: bool = False) -> bytes:
        """Take the next connection and answer its CONNECT with a CONNACK (accepted); the CONNECT's body."""
        if self._conn is not None:
            self._conn.close()
        self._conn, _ = self._listener.accept()
        self._conn.settimeout(self.timeout)
        self._reader.reset()
        self._received.clear()
        self._frames.clear()
        connect, _raw = self.next_frame()
        assert connect.first_byte == mqtt_wire.CONNECT, connect
        self.send(bytes((mqtt_wire.CONNACK, 2, int(session_present), 0)))
        return connect.body

    def send(self, data: bytes) -> None:
        assert self._conn is not None
        self._conn.sendall(data)

    def next_frame(self) -> tuple[mqtt_wire.Frame, bytes]:
        """The next whole packet from the client, and its bytes exactly as the client wrote them."""
        assert self._conn is not None
        while not self._frames:
            data = self._conn.recv(1 << 20)
            if not data:
                raise ConnectionError("the client closed the connection")
            self._received += data
            for frame in self._reader.feed(data):
                # What the reader still holds follows this frame; everything before it is this frame.
                size = len(self._received) - self._reader.pending
                self._frames.append((frame, bytes(self._received[:size])))
                del self._received[:size]
        return self._frames.pop(0)

    def closed_by_client(self) -> bool:
        """Wait for end of file: True if the client closed the connection, False if it sent more."""
        assert self._conn is not None
        return self._conn.recv(1) == b""

    def drop(self) -> None:
        """Close the connection from the broker's side, as a broker restart would."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        self.drop()
        self._listener.close()
