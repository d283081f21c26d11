#!/usr/bin/env python3
"""Interop client for the simulated IDIS meter, using the pinned dlms-cosem
library as an independent DLMS/COSEM client stack.

    dlms_cosem_client.py HOST PORT wrapper|hdlc public|management read [options]

Prints JSON lines on stdout: one `apdu` line per APDU sent or received (tag,
first bytes, ciphering), `hdlc_address` lines on HDLC, `counter` lines for the
invocation counter sync, `read` lines with the logical device name and the
clock, and a final `result` line. Exits non-zero on any failure.

Uses the library's public API (DlmsClient, TcpTransport, HdlcTransport, the
authentication managers) over the library's own BlockingTcpIO, subclassed
only to record every byte moved. HdlcTransport is subclassed only to read a
frame by its length field instead of up to the next 0x7E, working around a
library bug (LengthFramedHdlcTransport below).

dlms-cosem facts this script relies on (read in dlms-cosem 25.1.0, and seen on the wire):
* It protects every xDLMS request, HLS pass 3 included, with
  general-glo-ciphering (0xDB) and security control 0x30; the AARQ and RLRQ
  carry a glo-initiate-request (0x21). It decodes only general-glo-ciphering
  (0xDB) and glo-initiate-response (0x28) from the meter, so a meter must
  answer a 0xDB request with 0xDB. It proposes general-protection whenever it
  has an encryption key.
* It separates the byte I/O (SerialIO, BlockingTcpIO) from the framing
  (HdlcTransport, TcpTransport), so HDLC over TCP is HdlcTransport over
  BlockingTcpIO (u9n/dlms-cosem PR #58, "Add HDLC over TCP transport", was
  closed by the maintainer as implemented in later versions). By default it sends the 2-byte server address form (upper 1,
  lower 17: 02 23) because it drops zero address bytes;
  --hdlc-extended-addressing sends the 4-byte form (00 02 00 23), which the
  default simulated meter, configured with a 2-byte address, discards
  silently, and a meter with hdlc-any-address-form answers (see
  tests/interop.rs, "Findings").
* It computes f(StoC) for HLS pass 3 with its current invocation counter and
  then ciphers the action-request carrying it with the same counter, so one
  IV serves a GMAC and a GCM encryption under the same key. The meter, like
  Gurux's server, does not check the counter inside f(StoC), so this passes.
* Its structlog output goes to stdout by default; it is sent to stderr here.
"""

from __future__ import annotations

import logging
import sys
import traceback

import structlog

from common import (
    COUNTER_OBIS,
    MANAGEMENT_SAP,
    PUBLIC_SAP,
    Recording,
    emit,
    fail,
    finish,
    parse_args,
    report_link,
)

structlog.configure(
    logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
)

from dlms_cosem import cosem, enumerations, utils  # noqa: E402
from dlms_cosem.client import DlmsClient  # noqa: E402
from dlms_cosem.io import BlockingTcpIO, HdlcTransport, TcpTransport  # noqa: E402
from dlms_cosem.hdlc import frames  # noqa: E402
from dlms_cosem.security import (  # noqa: E402
    HighLevelSecurityGmacAuthentication,
    NoSecurityAuthentication,
)


class RecordingIO(BlockingTcpIO):
    """The library's own blocking TCP I/O, recording every byte it moves."""

    def __init__(self, args) -> None:
        super().__init__(host=args.host, port=args.port, timeout=int(args.timeout))
        self.record = Recording()

    def send(self, data: bytes) -> None:
        super().send(data)
        self.record.sent += data

    def recv(self, amount: int = 1) -> bytes:
        data = super().recv(amount)
        self.record.received += data
        return data


def obis(text: str) -> cosem.Obis:
    return cosem.Obis.from_string(text)


class LengthFramedHdlcTransport(HdlcTransport):
    """HdlcTransport reading each frame from the socket by its length field.

    dlms-cosem 25.1.0's HdlcTransport.recv_frame reads from one 0x7E to the
    next, and its HDLC parser asks for more data after every 0x7E that does not
    end a parsable frame. DLMS HDLC has no byte stuffing, so a frame's FCS may
    end in 0x7E (1 frame in 256): recv_frame stops at that byte, then reads the
    real closing flag as the opening flag of the next frame and waits for a
    frame that never comes. Seen here as a 10 s timeout in one run of
    tests/interop.rs in ten to twenty (tests/interop.rs, "Findings").

    Here a whole frame is read by its length field, then handed to the library
    in the pieces it expects (up to each 0x7E), without waiting on the socket
    while a piece of the frame is left. The bytes are the frame's, unchanged;
    the library's HDLC parser still does all the parsing.
    """

    def recv_frame(self) -> bytes:
        flag = frames.HDLC_FLAG[0]
        pending = getattr(self, "_pending", b"")
        if not pending:
            pending = self._read_whole_frame()
        start = 1 if pending[0] == flag else 0
        try:
            end = pending.index(flag, start) + 1
        except ValueError:
            end = len(pending)
        self._pending = pending[end:]
        return pending[:end]

    def _read_whole_frame(self) -> bytes:
        flag = frames.HDLC_FLAG
        first = self.io.recv(1)
        # An opening flag, or several (a closing flag, fill flags); the format
        # field that follows starts with 0xA, never 0x7E.
        while first == flag:
            first = self.io.recv(1)
        head = first + self.io.recv(1)
        length = ((head[0] << 8) | head[1]) & 0x07FF
        # The rest of the frame, then its closing flag.
        return flag + head + self.io.recv(length - 2 + 1)


class Session:
    def __init__(self, args, label: str, sap: int, ciphered: bool, ic: int | None):
        self.args = args
        self.label = label
        self.io = RecordingIO(args)
        if args.transport == "hdlc":
            transport = LengthFramedHdlcTransport(
                client_logical_address=sap,
                server_logical_address=args.server_logical,
                server_physical_address=args.server_physical,
                extended_addressing=args.hdlc_extended_addressing,
                io=self.io,
            )
        else:
            transport = TcpTransport(
                client_logical_address=sap,
                server_logical_address=args.wport,
                io=self.io,
            )
        if ciphered:
            self.client = DlmsClient(
                transport=transport,
                authentication=HighLevelSecurityGmacAuthentication(challenge_length=32),
                encryption_key=bytes.fromhex(args.ek),
                authentication_key=bytes.fromhex(args.ak),
                client_system_title=bytes.fromhex(args.system_title),
                client_initial_invocation_counter=ic,
            )
        else:
            self.client = DlmsClient(transport=transport, authentication=NoSecurityAuthentication())

    def open(self) -> None:
        self.client.connect()
        self.client.associate()
        conf = self.client.dlms_connection.conformance
        emit("associated", association=self.label,
             general_protection=bool(getattr(conf, "general_protection", False)))

    def close(self) -> None:
        try:
            self.client.release_association()
            self.client.disconnect()
        finally:
            report_link(self.io.record, self.args.transport, self.label)

    def get(self, interface: enumerations.CosemInterface, ln: str, attribute: int):
        raw = self.client.get(cosem.CosemAttribute(interface=interface, instance=obis(ln), attribute=attribute))
        return utils.parse_as_dlms_data(raw)

    def read_ldn_and_clock(self) -> None:
        ldn = self.get(enumerations.CosemInterface.DATA, "0-0:42.0.0.255", 2)
        clock = self.get(enumerations.CosemInterface.CLOCK, "0-0:1.0.0.255", 2)
        emit("read", association=self.label, ldn=bytes(ldn).decode("latin-1"), clock=raw_date_time(clock))


def raw_date_time(value) -> str:
    """The 12 octets of a date-time as hex (dlms-cosem may already have parsed them)."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    raise TypeError(f"clock value is not an octet-string: {value!r}")


def sync_counter(args, label: str) -> int:
    if args.invocation_counter is not None:
        return args.invocation_counter
    s = Session(args, label, PUBLIC_SAP, False, None)
    try:
        s.open()
        last = int(s.get(enumerations.CosemInterface.DATA, COUNTER_OBIS, 2))
    finally:
        s.close()
    emit("counter", association=label, last=last, next=last + 1)
    return last + 1


def main() -> None:
    args = parse_args("dlms-cosem", ["read"])
    try:
        if args.client == "public":
            s = Session(args, "public", PUBLIC_SAP, False, None)
        else:
            ic = sync_counter(args, "public-counter")
            s = Session(args, "management", MANAGEMENT_SAP, True, ic)
        s.open()
        s.read_ldn_and_clock()
        s.close()
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001
        fail(f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
    finish("dlms-cosem")


if __name__ == "__main__":
    main()
