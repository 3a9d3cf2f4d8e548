"""`python -m darp_onnx.cli`: the CLI, as torchrun launches it for `prune --nproc N`."""

from darp_onnx.cli.app import main

main()
