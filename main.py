"""Train and evaluate a multi-label classifier from partial labels: python main.py --help"""
import os
import sys

import distributed
import train
from config import build_config, get_args_parser
from errors import UserError


def main(argv=None):
    parser = get_args_parser()
    parser.add_argument("--resume", action="store_true",
                        help="continue the interrupted run in the run folder from its last completed epoch")
    args = parser.parse_args(argv)
    if not distributed.is_main():       # under torchrun, one process speaks for all
        sys.stdout = open(os.devnull, "w")
    try:
        cfg = build_config(args)
        print(f"git commit {train.git_state()['commit']}; run folder {cfg.run_dir}")
        train.seed_everything(cfg.seed)
        train.run(cfg, resume=args.resume)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        distributed.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
