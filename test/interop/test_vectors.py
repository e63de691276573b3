"""protocol/vectors against this Python client's decoder and against a live server.

The format and the matching rules are protocol/vectors/README.md's. Run from test/interop with
HELLWALL_TYPES_DIR set, after `npm run build` (see README.md).
"""

from __future__ import annotations

import json
import sys
import unittest
from typing import Any, Dict, List, Tuple

import harness
import hellwall_client as hc
import hellwall_types as ht

VECTORS = harness.PROTOCOL / "vectors"
COUNTS: Dict[str, int] = {}

# Each command's generated response parser, by code (protocol/index.json).
PARSERS = {
    0: ht.hello_response_from_dict,
    1: ht.passcode_request_response_from_dict,
    2: ht.passcode_auth_response_from_dict,
    3: ht.token_check_response_from_dict,
}


def load(name: str) -> Dict[str, Any]:
    return json.loads((VECTORS / name).read_text("utf-8"))


def hex_bytes(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


def decode(data: bytes, max_frame_bytes: int, chunks: List[bytes]) -> Tuple[List[dict], bool]:
    """Feeds `chunks` (which join to `data`) to a fresh decoder; the results in the vectors' form."""
    assert b"".join(chunks) == data
    decoder = hc.FrameDecoder(max_frame_bytes)
    results: List[dict] = []
    for chunk in chunks:
        # After an error push must yield nothing more, so the error can be appended at the end.
        results += [{"object": obj} for obj in decoder.push(chunk)]
    if decoder.error is not None:
        results.append({"error": decoder.error.code})
    return results, decoder.error is None and decoder.buffered > 0


def splits(data: bytes) -> List[Tuple[str, List[bytes]]]:
    """Whole, one byte at a time, and split in two at every position (protocol/vectors/README.md)."""
    out = [("whole", [data]), ("byte by byte", [data[i : i + 1] for i in range(len(data))])]
    out += [(f"split at {i}", [data[:i], data[i:]]) for i in range(1, len(data))]
    return out


def tearDownModule() -> None:
    # After the tests, so the line does not land inside unittest's "name ... ok" line.
    if COUNTS:
        print("vectors ran: " + " ".join(f"{k}={v}" for k, v in sorted(COUNTS.items())), file=sys.stderr)


class DecoderVectorsTest(unittest.TestCase):
    def test_decoder_vectors(self) -> None:
        doc = load("decoder.json")
        vectors = doc["vectors"]
        self.assertGreater(len(vectors), 0, "decoder.json holds vectors")
        feeds = 0
        for v in vectors:
            data = hex_bytes(v["bytes"])
            max_frame = v.get("maxFrameBytes", doc.get("maxFrameBytes"))
            self.assertIsInstance(max_frame, int, v["name"])
            for how, chunks in splits(data):
                with self.subTest(vector=v["name"], fed=how):
                    results, incomplete = decode(data, max_frame, chunks)
                    self.assertTrue(hc.json_equal(results, v["results"]), f"got {results!r}, want {v['results']!r}")
                    self.assertEqual(incomplete, v["incomplete"])
                feeds += 1
        COUNTS["decoder"] = len(vectors)
        COUNTS["decoder_feeds"] = feeds
        self.assertGreater(feeds, len(vectors))


class ExchangeVectorsTest(unittest.TestCase):
    """Each vector on a fresh connection to a server with the default configuration."""

    @classmethod
    def setUpClass(cls) -> None:
        tmp = harness.temp_dir("hellwall-py-vectors-")
        cls.addClassCleanup(tmp.cleanup)
        # No account and no SMTP server: the vectors name no account, so nothing is ever mailed.
        cls.server = harness.Server(tmp.name)
        cls.addClassCleanup(cls.server.kill)

    @classmethod
    def tearDownClass(cls) -> None:
        code = cls.server.stop()
        if code != 0:
            raise AssertionError(f"SIGTERM: server exited {code}, expected 0\n{cls.server.stderr}")

    def test_exchange_vectors(self) -> None:
        doc = load("exchanges.json")
        vectors = doc["vectors"]
        self.assertGreater(len(vectors), 0, "exchanges.json holds vectors")

        # The vectors assume the server's limits they declare; check this server has them.
        with self.server.connect() as c:
            hello = c.hello()
        limits = doc.get("server", {})
        self.assertEqual(hello.max_frame_bytes, limits.get("maxFrameBytes", 65536))
        self.assertEqual(hello.max_inflight, limits.get("maxInflight", 64))

        responses = 0
        for v in vectors:
            with self.subTest(vector=v["name"], rule=v.get("rule")):
                responses += self.run_vector(v)
        COUNTS["exchanges"] = len(vectors)
        COUNTS["exchange_responses"] = responses
        self.assertGreater(responses, 0)

    def run_vector(self, v: Dict[str, Any]) -> int:
        # Strict client with the schema check as observer: every response, the probe's included,
        # must validate against its schema, as the vectors README requires.
        c = self.server.connect()
        try:
            replies = c.send_raw(hex_bytes(v["send"]), answers=len(v["expect"]))
            for n, (reply, expect) in enumerate(zip(replies, v["expect"])):
                raw = reply.response()
                for key, want in expect["match"].items():
                    if key == "message":
                        continue  # for people; never matched
                    self.assertIn(key, raw, f"response {n}: {key!r} missing in {raw!r}")
                    self.assertTrue(hc.json_equal(raw[key], want), f"response {n}: {key} is {raw[key]!r}, want {want!r}")
                for key in expect.get("absent", []):
                    self.assertNotIn(key, raw, f"response {n}: {key!r} must be absent")
                # And it fits the generated types, with nothing they do not declare.
                if raw.get("status") == "error":
                    hc.parse_response(raw, ht.error_response_from_dict, None, strict=True)
                else:
                    hc.parse_response(raw, PARSERS[raw["code"]], None, strict=True)
            then = v["then"]
            if then == "close":
                c.expect_close()  # raises if anything more arrives, times out if it stays open
            elif then == "open":
                probe = c.send({"code": 0, "id": "probe"}, ht.hello_response_from_dict).result()
                self.assertIsInstance(probe, ht.HelloResponse, "the connection stays usable")
                self.assertEqual((probe.id, probe.status), ("probe", ht.OkStatus.OK))
            else:
                self.fail(f"unknown then: {then!r}")
            return len(replies)
        finally:
            c.close()


if __name__ == "__main__":
    unittest.main()
