#!/usr/bin/env python3
"""Interop client for the simulated IDIS meter, using the pinned Gurux Python
library (gurux-dlms) as an independent DLMS/COSEM client stack.

    gurux_client.py HOST PORT wrapper|hdlc public|management read|key-transfer [options]

Prints JSON lines on stdout: one `apdu` line per APDU sent or received (tag,
first bytes, ciphering), `hdlc_address` lines on HDLC, `counter` lines for the
invocation counter sync, `read` lines with the logical device name and the
clock, `key_transfer` and `old_key` lines for the key transfer, and a final
`result` line. Exits non-zero on any failure.

This file only calls the library's public client API (GXDLMSSecureClient,
GXReplyData, COSEM object classes); the TCP link is ours (common.py), so every
byte is recorded.

Gurux facts this script relies on (read in gurux_dlms 1.0.203, and seen on the wire):
* Gurux protects xDLMS requests with general-glo-ciphering (0xDB) only when
  general-protection is in the negotiated conformance and the association is
  complete; otherwise it uses the service-specific glo- APDUs (0xC8 get, 0xCB
  action). HLS pass 3 (reply_to_HLS_authentication) is sent before the
  association is complete, so it is always glo-action-request (0xCB).
  --no-general-protection removes the bit from the proposed conformance, and
  then every request is glo-.
* Gurux releases with an unprotected RLRQ by default; a ciphered association
  needs a protected one (Yellow Book SYMSEC_REL_N1, the meter refuses the
  other), so the script sets useProtectedRelease for ciphered clients.
* The meter answers with the protection of the request: glo- for glo-,
  general-glo for general-glo (0xCF to the 0xCB pass 3, 0xDB to 0xDB GETs).
* Gurux computes f(StoC) with counter n and ciphers the action-request that
  carries it with n+1; every AARQ, request and RLRQ takes a fresh counter.
* After a key transfer the meter answers under the old key, then switches the
  live association to the new one (as Gurux's own server does: its security
  setup applies the keys after the reply is built), so the script sets the
  new key before releasing.
* Gurux prints progress text with print(); common.py sends it to stderr.
* The HDLC server address is GXDLMSClient.getServerAddress(1, 17) = 1 << 7 | 17,
  sent in the 2-byte form 02 23; the client address is one byte (16: 21, 1: 03).
"""

from __future__ import annotations

import sys
import traceback

from common import (
    CLOCK_OBIS,
    COUNTER_OBIS,
    LDN_OBIS,
    MANAGEMENT_SAP,
    PUBLIC_SAP,
    SECURITY_SETUP_OBIS,
    RecordingLink,
    emit,
    fail,
    finish,
    parse_args,
    report_link,
)

from gurux_dlms import GXByteBuffer, GXDLMSClient, GXReplyData
from gurux_dlms.enums import Authentication, Conformance, InterfaceType, Security
from gurux_dlms.objects import GXDLMSClock, GXDLMSData, GXDLMSSecuritySetup
from gurux_dlms.objects.enums import GlobalKeyType
from gurux_dlms.secure import GXDLMSSecureClient


class Session:
    """One TCP connection carrying one association of one Gurux client."""

    def __init__(self, args, label: str, sap: int, ek: bytes | None, ic: int | None):
        self.args = args
        self.label = label
        self.hdlc = args.transport == "hdlc"
        interface = InterfaceType.HDLC if self.hdlc else InterfaceType.WRAPPER
        if self.hdlc:
            server = GXDLMSClient.getServerAddress(args.server_logical, args.server_physical)
        else:
            server = args.wport
        if ek is None:
            self.client = GXDLMSSecureClient(True, sap, server, Authentication.NONE, None, interface)
        else:
            self.client = GXDLMSSecureClient(True, sap, server, Authentication.HIGH_GMAC, None, interface)
            c = self.client.ciphering
            c.security = Security.AUTHENTICATION_ENCRYPTION
            c.systemTitle = bytes.fromhex(args.system_title)
            c.blockCipherKey = ek
            c.authenticationKey = bytes.fromhex(args.ak)
            c.invocationCounter = ic
            self.client.useProtectedRelease = True
            if getattr(args, "no_general_protection", False):
                self.client.proposedConformance &= ~Conformance.GENERAL_PROTECTION
        self.link = RecordingLink(args.host, args.port, args.timeout)

    # -- one request, one complete reply ---------------------------------

    def exchange(self, frame) -> GXReplyData:
        reply = GXReplyData()
        self._send_and_read(frame, reply)
        # Long replies: ask for the next HDLC segment or GET block.
        while reply.isMoreData():
            self._send_and_read(self.client.receiverReady(reply), reply)
        if reply.error != 0:
            raise RuntimeError(f"meter answered with error {reply.error}")
        return reply

    def _send_and_read(self, frame, reply: GXReplyData) -> None:
        if frame is not None:
            self.link.send(bytes(frame))
        buf = GXByteBuffer()
        while True:
            buf.set(self.link.recv_some(4096))
            notify = GXReplyData()
            if self.client.getData(buf, reply, notify):
                return

    def exchange_all(self, frames) -> GXReplyData:
        reply = None
        for f in frames:
            reply = self.exchange(f)
        return reply

    # -- association -----------------------------------------------------

    def open(self) -> None:
        if self.hdlc:
            reply = self.exchange(self.client.snrmRequest())
            self.client.parseUAResponse(reply.data)
        reply = self.exchange_all(self.client.aarqRequest())
        self.client.parseAareResponse(reply.data)
        if self.client.getIsAuthenticationRequired():
            reply = self.exchange_all(self.client.getApplicationAssociationRequest())
            self.client.parseApplicationAssociationResponse(reply.data)
        emit("associated", association=self.label,
             negotiated_conformance=int(self.client.negotiatedConformance),
             general_protection=bool(self.client.negotiatedConformance & Conformance.GENERAL_PROTECTION))

    def close(self) -> None:
        try:
            rel = self.client.releaseRequest()
            if rel:
                self.exchange_all(rel)
            if self.hdlc:
                disc = self.client.disconnectRequest()
                if disc:
                    self.exchange(disc)
        finally:
            self.link.close()
            report_link(self.link, self.args.transport, self.label)

    def abandon(self) -> None:
        self.link.close()
        report_link(self.link, self.args.transport, self.label)

    # -- services --------------------------------------------------------

    def read(self, obj, attribute: int):
        reply = self.exchange_all(self.client.read(obj, attribute))
        return reply.value

    def read_ldn_and_clock(self) -> None:
        ldn = self.read(GXDLMSData(LDN_OBIS), 2)
        clock = self.read(GXDLMSClock(CLOCK_OBIS), 2)
        emit("read", association=self.label, ldn=bytes(ldn).decode("latin-1"), clock=bytes(clock).hex())

    def read_counter(self) -> int:
        return int(self.read(GXDLMSData(COUNTER_OBIS), 2))


def sync_counter(args, label: str) -> int:
    """Reads the management client's last accepted invocation counter with the public client."""
    if args.invocation_counter is not None:
        return args.invocation_counter
    s = Session(args, label, PUBLIC_SAP, None, None)
    try:
        s.open()
        last = s.read_counter()
    finally:
        s.close()
    emit("counter", association=label, last=last, next=last + 1)
    return last + 1


def management(args, label: str, ek: bytes, counter_label: str) -> Session:
    ic = sync_counter(args, counter_label)
    s = Session(args, label, MANAGEMENT_SAP, ek, ic)
    s.open()
    return s


def run_read(args) -> None:
    if args.client == "public":
        s = Session(args, "public", PUBLIC_SAP, None, None)
        s.open()
        s.read_ldn_and_clock()
        s.close()
    else:
        s = management(args, "management", bytes.fromhex(args.ek), "public-counter")
        s.read_ldn_and_clock()
        s.close()


def run_key_transfer(args) -> None:
    if args.client != "management":
        fail("key-transfer needs the management client")
    old_ek = bytes.fromhex(args.ek)
    new_ek = bytes.fromhex(args.new_ek)
    kek = bytes.fromhex(args.kek)

    # 1. Associate with the old key, read, transfer the new key (wrapped under the KEK).
    s = management(args, "old-key", old_ek, "counter-1")
    s.read_ldn_and_clock()
    setup = GXDLMSSecuritySetup(SECURITY_SETUP_OBIS)
    frames = setup.globalKeyTransfer(s.client, kek, [(GlobalKeyType.UNICAST_ENCRYPTION, new_ek)])
    s.exchange_all(frames)  # raises unless the action result is success
    emit("key_transfer", association="old-key", key_id=int(GlobalKeyType.UNICAST_ENCRYPTION),
         result="success")
    # The meter answers under the old key, then applies the new one, also to this
    # association (Gurux's server does the same: dlms-facts.md 3.4). Release under it.
    s.client.ciphering.blockCipherKey = new_ek
    s.close()

    # 2. A new association with the new key.
    s = management(args, "new-key", new_ek, "counter-2")
    s.read_ldn_and_clock()
    s.close()

    # 3. The old key must be refused, with a fresh counter so the counter is not the reason.
    ic = sync_counter(args, "counter-3")
    s = Session(args, "old-key-again", MANAGEMENT_SAP, old_ek, ic)
    try:
        s.open()
    except Exception as e:  # noqa: BLE001 - any refusal is what we want; report it
        s.abandon()
        emit("old_key", refused=True, error=f"{type(e).__name__}: {e}")
        return
    s.close()
    fail("the meter accepted the old key after the key transfer")


def main() -> None:
    args = parse_args("gurux-dlms", ["read", "key-transfer"])
    try:
        if args.action == "read":
            run_read(args)
        else:
            run_key_transfer(args)
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001
        fail(f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
    finish("gurux-dlms")


if __name__ == "__main__":
    main()
