"""Convert a demo training checkpoint into final weights (like save_checkpoint_stage1.py)."""

import argparse
import json
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    state = json.loads((args.checkpoint / "state.json").read_text())
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "weights.json").write_text(json.dumps({
        "stage": state["stage"], "step": state["step"], "value": state["value"],
        "from": str(args.checkpoint),
    }))
    print(f"converted {args.checkpoint} (step {state['step']}) -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
