"""``python -m infomorph_kernels check``: the fused backends of this installation against the oracle."""
import sys

USAGE = "usage: python -m infomorph_kernels check [--device D] [--backends ...] [--batch B] [--neurons N] [--bins K]"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] != "check":
        print(USAGE + "\n(run `python -m infomorph_kernels check --help` for what it checks)", file=sys.stderr)
        return 2
    from .selfcheck import main as check

    return check(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
