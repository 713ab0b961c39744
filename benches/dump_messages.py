"""Write the benchmark's messages to files, for the Rust decoding benchmark (no Kafka needed).

``python benches/dump_messages.py DIR [--events N]`` writes, for each dataset of ``datagen``:

- ``DIR/<dataset>.schemas.json``: ``{"key": [id, schema], "value": [id, schema]}``;
- ``DIR/<dataset>.messages``: the N (key, value) pairs as ``datagen`` produces them to Kafka
  (fastavro behind the Confluent frame), each as a 4-byte big-endian length and the bytes,
  key then value.

``cargo test --release --lib arrow::speed -- --ignored --nocapture`` reads them from the
directory named by ``CHANGESTREAM_BENCH_MESSAGES`` (see benches/README.md).
"""

from __future__ import annotations

import argparse
import json
import struct
from pathlib import Path

import datagen

KEY_ID = 1
VALUE_ID = 2


def dump(dataset: str, events: int, directory: Path) -> None:
    key_schema, value_schema = datagen.SCHEMAS[dataset]
    schemas = {"key": [KEY_ID, key_schema], "value": [VALUE_ID, value_schema]}
    (directory / f"{dataset}.schemas.json").write_text(json.dumps(schemas))
    encode_key = datagen.encoder(key_schema, KEY_ID)
    encode_value = datagen.encoder(value_schema, VALUE_ID)
    with (directory / f"{dataset}.messages").open("wb") as out:
        for key, value in datagen.events(dataset, events):
            for body in (encode_key(key), encode_value(value)):
                out.write(struct.pack(">I", len(body)))
                out.write(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    args.directory.mkdir(parents=True, exist_ok=True)
    for dataset in datagen.DATASETS:
        dump(dataset, args.events, args.directory)


if __name__ == "__main__":
    main()
