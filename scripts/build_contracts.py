"""Compile the Solidity contracts into committed, byte-for-byte reproducible artifacts.

Runs the npm ``solc`` pinned in ``contracts/package-lock.json`` through its standard-JSON
interface (``contracts/compile.cjs``) with fixed settings, and writes one
``contracts/build/<Name>.json`` per deployable contract holding the ABI, creation and
runtime bytecode, immutable references, metadata, the compiler version and the exact,
self-contained standard-JSON input, so that Sourcify or Blockscout can verify a deployment.

    python scripts/build_contracts.py            # rebuild contracts/build/
    python scripts/build_contracts.py --check    # fail if contracts/build/ is stale
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = ROOT / "contracts"
#: Deployable contract name -> its source unit; OpenZeppelin imports are resolved by solc.
DEPLOYABLE = {
    "DeviceRegistry": "src/DeviceRegistry.sol",
    "TelemetryNotary": "src/TelemetryNotary.sol",
}

# Fixed compiler settings: changing any of them changes every artifact.
SETTINGS: dict[str, Any] = {
    "evmVersion": "cancun",
    "viaIR": True,
    "optimizer": {"enabled": True, "runs": 200},
    "metadata": {"bytecodeHash": "ipfs", "useLiteralContent": True},
    "outputSelection": {
        "*": {
            "*": [
                "abi",
                "evm.bytecode.object",
                "evm.deployedBytecode.object",
                "evm.deployedBytecode.immutableReferences",
                "evm.methodIdentifiers",
                "metadata",
            ]
        }
    },
}


def standard_json_input() -> dict[str, Any]:
    """The compiler input for our sources; compile.cjs embeds the imported ones."""
    units = sorted(DEPLOYABLE.values())
    sources = {unit: {"content": (CONTRACTS / unit).read_text("utf-8")} for unit in units}
    return {"language": "Solidity", "sources": sources, "settings": SETTINGS}


def compile_contracts() -> dict[str, Any]:
    """Run solc; return ``{"version", "input", "output"}`` or exit with its errors."""
    result = subprocess.run(
        ["node", str(CONTRACTS / "compile.cjs")],
        input=json.dumps(standard_json_input()),
        capture_output=True,
        text=True,
        cwd=CONTRACTS,
        check=False,
    )
    if result.returncode != 0:
        sys.exit(f"solc failed:\n{result.stderr}")
    compiled: dict[str, Any] = json.loads(result.stdout)
    warnings = [e["formattedMessage"] for e in compiled["output"].get("errors", [])]
    if warnings:
        sys.exit("solc warnings (the build must be warning-free):\n" + "\n".join(warnings))
    return compiled


def artifacts(compiled: dict[str, Any]) -> dict[str, str]:
    """One deterministic JSON document per deployable contract, keyed by file name."""
    documents = {}
    for name, unit in DEPLOYABLE.items():
        contract = compiled["output"]["contracts"][unit][name]
        evm = contract["evm"]
        artifact = {
            "contractName": name,
            "sourceName": unit,
            "compiler": {"name": "solc", "version": compiled["version"]},
            "abi": contract["abi"],
            "bytecode": "0x" + evm["bytecode"]["object"],
            "deployedBytecode": "0x" + evm["deployedBytecode"]["object"],
            "immutableReferences": evm["deployedBytecode"]["immutableReferences"],
            "methodIdentifiers": evm["methodIdentifiers"],
            "metadata": contract["metadata"],
            "standardJsonInput": compiled["input"],
        }
        documents[f"{name}.json"] = json.dumps(artifact, indent=2, sort_keys=True) + "\n"
    return documents


def write(documents: dict[str, str], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for file_name, text in documents.items():
        (out_dir / file_name).write_text(text, "utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=CONTRACTS / "build", help="output directory")
    parser.add_argument("--check", action="store_true", help="compare with --out, write nothing")
    args = parser.parse_args()
    documents = artifacts(compile_contracts())
    if not args.check:
        write(documents, args.out)
        print(f"wrote {', '.join(sorted(documents))} to {args.out}")
        return 0
    stale = [
        name
        for name, text in sorted(documents.items())
        if not (args.out / name).is_file() or (args.out / name).read_bytes() != text.encode()
    ]
    if stale:
        print(f"stale artifacts in {args.out}: {', '.join(stale)}", file=sys.stderr)
        return 1
    print(f"{args.out} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
