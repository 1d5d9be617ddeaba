"""Inference speed of the pipeline on this machine: latency per aligned face and batched throughput.

    python train/benchmark.py                      # embedded weights, CPU, all cores
    python train/benchmark.py --model org/name --device cuda --batch-sizes 1 16 256

Prints a markdown table: median milliseconds per call over repeated runs, images/s, peak memory.
"""

import argparse
import resource
import statistics
import time
import warnings

import torch

from unmask_hf import UnmaskPipeline


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_call(fn, repeats: int, sync) -> float:
    """Median seconds of `fn()` over `repeats` runs after two warm-up runs."""
    for _ in range(2):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="Hub id or folder (default: embedded weights)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # untrained-weights warning: speed does not depend on training
        pipe = UnmaskPipeline.from_pretrained(args.model, device=args.device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for module in (pipe.map_generator, pipe.edit_generator):
        module.to(device, dtype=dtype, memory_format=torch.channels_last)
    size = pipe.image_size
    name = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"| device | batch | ms per batch (median of {args.repeats}) | ms per face | faces/s | peak memory |")
    print("|---|---|---|---|---|---|")
    for batch in args.batch_sizes:
        x = (torch.rand(batch, 3, size, size, device=device) * 2 - 1).to(dtype).contiguous(memory_format=torch.channels_last)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        seconds = time_call(lambda: pipe.predict(x), args.repeats, sync)
        memory = f"{torch.cuda.max_memory_allocated() / 2**20:.0f} MiB GPU" if cuda else f"{peak_rss_mib():.0f} MiB RSS"
        print(f"| {name} | {batch} | {seconds * 1000:.1f} | {seconds * 1000 / batch:.1f} | {batch / seconds:.0f} | {memory} |")


if __name__ == "__main__":
    main()
