"""Shared pieces of the interop client scripts: command line, JSON-line output,
a TCP link that records every byte, and a small decoder of what was recorded
(IEC 62056-47 wrapper frames, or IEC 62056-46 HDLC frames) so each script can
report which APDU tags it sent and received.

Written for this project; it uses no code of the peer libraries.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from typing import Any, Dict, List, Optional

# Green Book example keys, the simulator's defaults (dlms-facts.md 1.5).
DEFAULT_EK = "000102030405060708090A0B0C0D0E0F"
DEFAULT_AK = "D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF"
DEFAULT_CLIENT_TITLE = "4D4D4D0000000001"

LDN_OBIS = "0.0.42.0.0.255"
CLOCK_OBIS = "0.0.1.0.0.255"
SECURITY_SETUP_OBIS = "0.0.43.0.0.255"
COUNTER_OBIS = "0.0.43.1.0.255"

PUBLIC_SAP = 16
MANAGEMENT_SAP = 1

# Ciphered APDU tags (dlms-facts.md 1.2): service-specific glo- and ded-, and general.
GLO_TAGS = {0x21, 0x28, 0x2E, 0xC8, 0xC9, 0xCA, 0xCB, 0xCC, 0xCD, 0xCF}
DED_TAGS = {0x41, 0x48, 0x4E, 0xD0, 0xD1, 0xD2, 0xD3, 0xD4, 0xD5, 0xD7}
GENERAL_TAGS = {0xDB, 0xDC, 0xDD, 0xDF}


# Our JSON lines go to the real stdout; anything else printed (the peer libraries
# print progress and debug text with print()) is sent to stderr.
_OUT = sys.stdout
sys.stdout = sys.stderr


def emit(event: str, **fields: Any) -> None:
    """Prints one JSON line on stdout."""
    fields = {"event": event, **fields}
    _OUT.write(json.dumps(fields, sort_keys=True) + "\n")
    _OUT.flush()


def parse_args(library: str, actions: List[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=f"Interop client for the simulated meter, using {library}")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("transport", choices=["wrapper", "hdlc"])
    p.add_argument("client", choices=["public", "management"])
    p.add_argument("action", choices=actions)
    p.add_argument("--ek", default=DEFAULT_EK, help="global unicast encryption key (hex)")
    p.add_argument("--ak", default=DEFAULT_AK, help="authentication key (hex)")
    p.add_argument("--kek", default=None, help="master key / KEK (hex); default: the EK")
    p.add_argument("--new-ek", default="00112233445566778899AABBCCDDEEFF",
                   help="key-transfer: the new global unicast encryption key (hex)")
    p.add_argument("--system-title", default=DEFAULT_CLIENT_TITLE, help="client system title (hex)")
    p.add_argument("--invocation-counter", type=int, default=None,
                   help="first invocation counter; default: read 0-0:43.1.0.255 with the public client and add 1")
    p.add_argument("--wport", type=int, default=1, help="wrapper: the server wPort")
    p.add_argument("--server-logical", type=int, default=1, help="HDLC: server upper (logical) address")
    p.add_argument("--server-physical", type=int, default=17, help="HDLC: server lower (physical) address")
    p.add_argument("--timeout", type=float, default=10.0, help="socket timeout in seconds")
    p.add_argument("--dump", action="store_true", help="add each APDU in full (hex) to its apdu line")
    extra_args(p, library)
    a = p.parse_args()
    if a.kek is None:
        a.kek = a.ek
    return a


def extra_args(p: argparse.ArgumentParser, library: str) -> None:
    if library == "gurux-dlms":
        p.add_argument("--no-general-protection", action="store_true",
                       help="leave general-protection out of the proposed conformance (Gurux then uses glo- APDUs)")
    if library == "dlms-cosem":
        p.add_argument("--hdlc-extended-addressing", action="store_true",
                       help="HDLC: send the 4-byte server address form")


class Recording:
    """Every byte sent and received on one connection."""

    def __init__(self) -> None:
        self.sent = bytearray()
        self.received = bytearray()


class RecordingLink(Recording):
    """A blocking TCP connection that keeps every byte sent and received."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        super().__init__()
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)

    def send(self, data: bytes) -> None:
        data = bytes(data)
        self.sent += data
        self.sock.sendall(data)

    def recv_some(self, n: int = 4096) -> bytes:
        chunk = self.sock.recv(n)
        if not chunk:
            raise ConnectionError("the meter closed the connection")
        self.received += chunk
        return chunk

    def recv_exact(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("the meter closed the connection")
            out += chunk
        self.received += out
        return bytes(out)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def wrapper_apdus(stream: bytes) -> List[bytes]:
    """Splits a recorded wrapper byte stream into its APDUs (IEC 62056-47: version 2,
    source wPort 2, destination wPort 2, length 2, then the APDU)."""
    out = []
    pos = 0
    while pos + 8 <= len(stream):
        length = int.from_bytes(stream[pos + 6:pos + 8], "big")
        out.append(bytes(stream[pos + 8:pos + 8 + length]))
        pos += 8 + length
    return out


def hdlc_frames(stream: bytes) -> List[bytes]:
    """Splits a recorded HDLC byte stream into frames (flag, format type 0xA with an
    11-bit length, then that many bytes, then a flag), without the flags."""
    frames = []
    pos = 0
    while pos < len(stream):
        if stream[pos] != 0x7E or pos + 3 > len(stream):
            pos += 1
            continue
        fmt = int.from_bytes(stream[pos + 1:pos + 3], "big")
        if fmt >> 12 != 0xA:
            pos += 1  # a closing flag followed by the next opening flag
            continue
        length = fmt & 0x7FF
        frames.append(bytes(stream[pos + 1:pos + 1 + length]))
        pos += 1 + length + 1
    return frames


def hdlc_address(frame: bytes, start: int) -> Optional[bytes]:
    """The address starting at `start`: bytes up to the first with its low bit set."""
    end = start
    while end < len(frame) and end - start < 4:
        if frame[end] & 1:
            return frame[start:end + 1]
        end += 1
    return None


def describe_hdlc(frame: bytes) -> Dict[str, Any]:
    """The addresses, control byte and (for a first I-frame segment) the APDU of a frame."""
    d: Dict[str, Any] = {}
    dest = hdlc_address(frame, 2)
    if dest is None:
        return d
    src = hdlc_address(frame, 2 + len(dest))
    if src is None:
        return d
    ctrl_at = 2 + len(dest) + len(src)
    if ctrl_at >= len(frame):
        return d
    d["dest"] = dest.hex()
    d["src"] = src.hex()
    control = frame[ctrl_at]
    d["control"] = f"{control:02x}"
    info = frame[ctrl_at + 3:-2] if len(frame) > ctrl_at + 3 + 2 else b""
    d["info"] = info
    return d


def hdlc_apdus(stream: bytes) -> List[bytes]:
    """The APDUs carried by I-frames, segments joined (LLC header removed)."""
    out = []
    current = bytearray()
    for f in hdlc_frames(stream):
        d = describe_hdlc(f)
        if "control" not in d:
            continue
        control = int(d["control"], 16)
        if control & 1:
            continue  # not an I-frame
        current += d["info"]
        segmented = bool(f[0] & 0x08)
        if not segmented:
            if current[:2] in (b"\xe6\xe6", b"\xe6\xe7"):
                current = current[3:]
            out.append(bytes(current))
            current = bytearray()
    return out


def hdlc_addressing(stream: bytes) -> Optional[Dict[str, str]]:
    """The destination and source address bytes of the first frame (the SNRM)."""
    for f in hdlc_frames(stream):
        d = describe_hdlc(f)
        if "dest" in d:
            return {"dest": d["dest"], "src": d["src"], "control": d["control"]}
    return None


DUMP = "--dump" in sys.argv


def report_link(link: Recording, transport: str, label: str) -> List[Dict[str, Any]]:
    """Emits one `apdu` line per APDU sent and received on the link; returns them."""
    split = wrapper_apdus if transport == "wrapper" else hdlc_apdus
    lines = []
    for direction, stream in (("tx", link.sent), ("rx", link.received)):
        for apdu in split(bytes(stream)):
            if not apdu:
                continue
            line = {
                "association": label,
                "dir": direction,
                "tag": f"{apdu[0]:02x}",
                "head": apdu[:16].hex(),
                "ciphering": ciphering_of(apdu),
            }
            if DUMP:
                line["hex"] = apdu.hex()
            sc = security_control(apdu)
            if sc is not None:
                line["security_control"] = f"{sc:02x}"
            # AARQ / AARE / RLRQ / RLRE carry the initiate APDU in user-information:
            # report what is inside too (0x01/0x08 plain, 0x21/0x28 glo-).
            inner = acse_user_information_tag(apdu)
            if inner is not None:
                line["user_information_tag"] = f"{inner:02x}"
            emit("apdu", **line)
            lines.append(line)
    if transport == "hdlc":
        addressing = hdlc_addressing(bytes(link.sent))
        if addressing:
            emit("hdlc_address", association=label, **addressing)
    return lines


def ciphering_of(apdu: bytes) -> str:
    t = apdu[0]
    if t in GENERAL_TAGS:
        return "general"
    if t in GLO_TAGS:
        return "glo"
    if t in DED_TAGS:
        return "ded"
    return "none"


def axdr_length(data: bytes, pos: int) -> Optional[tuple]:
    """An A-XDR length at `pos`: (value, position after it)."""
    if pos >= len(data):
        return None
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    n = first & 0x7F
    if pos + 1 + n > len(data):
        return None
    return int.from_bytes(data[pos + 1:pos + 1 + n], "big"), pos + 1 + n


def security_control(apdu: bytes) -> Optional[int]:
    """The security control byte of a ciphered APDU (dlms-facts.md 1.2): after the
    tag and length for glo-/ded- APDUs; after the system title and the length of
    the ciphered content for general-glo/ded-ciphering."""
    kind = ciphering_of(apdu)
    if kind in ("glo", "ded"):
        at = axdr_length(apdu, 1)
    elif apdu[0] in (0xDB, 0xDC):
        title = axdr_length(apdu, 1)
        if title is None:
            return None
        at = axdr_length(apdu, title[1] + title[0])
    else:
        return None
    if at is None or at[1] >= len(apdu):
        return None
    return apdu[at[1]]


def acse_user_information_tag(apdu: bytes) -> Optional[int]:
    """The first byte of the user-information octet string ([30] BE .. 04 ..) of an ACSE APDU."""
    if apdu[0] not in (0x60, 0x61, 0x62, 0x63) or len(apdu) < 2:
        return None
    pos = 2
    if apdu[1] & 0x80:
        pos += apdu[1] & 0x7F
    while pos + 2 <= len(apdu):
        tag = apdu[pos]
        length = apdu[pos + 1]
        hdr = 2
        if length & 0x80:
            n = length & 0x7F
            length = int.from_bytes(apdu[pos + 2:pos + 2 + n], "big")
            hdr += n
        if tag == 0xBE:
            inner = apdu[pos + hdr:pos + hdr + length]
            # 04 len <content>
            if len(inner) >= 3 and inner[0] == 0x04:
                skip = 2 + ((inner[1] & 0x7F) if inner[1] & 0x80 else 0)
                return inner[skip] if skip < len(inner) else None
            return None
        pos += hdr + length
    return None


def finish(distribution: str) -> None:
    """The final line: success, and the version of the peer library that ran."""
    from importlib.metadata import version

    emit("result", ok=True, library=distribution, version=version(distribution))


def fail(message: str, **fields: Any) -> None:
    emit("error", message=message, **fields)
    sys.exit(1)
