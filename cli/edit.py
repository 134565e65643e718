"""`fex edit RUN INPUT... --to SPEC... --out DIR`: parse options, call fextrain.edit, print the summary."""
from __future__ import annotations

import click

from cli.params import comma_floats
from fexdata.ingest.align import PAD_MODES
from fextrain.edit.context import STEADY
from fextrain.edit.source import JudgeOptions

_JUDGE = JudgeOptions()  # `fex eval`'s judge defaults (EvalOptions), so both commands share RUN/eval/judge


@click.command("edit", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("run", type=click.Path(exists=True))
@click.argument("inputs", metavar="INPUT...", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--to", "to", multiple=True, required=True,
              help="Target: an affect spec (joy, 0.5*joy, anger+sadness: weights above 0 adding up to at most 2), "
                   "'all' (every affect), or for videos a schedule CSV (affect,start,end[,intensity]). Repeat it, "
                   "or separate specs with commas.")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="Output folder: <input>/<target>.png|.mp4, <input>/grid.png, edits.parquet, rejects/, edit.json. "
                   "Each <input> folder belongs to one input file; reruns into it resume.")
@click.option("--intensity", default="1", show_default=True, callback=comma_floats,
              help="Strength sweep: every target at each of these weights (0 to 2), e.g. 0,0.5,1,1.5.")
@click.option("--from", "source", default="auto", show_default=True,
              help="Source affect of the inputs (an affect spec), or auto to estimate it per face. "
                   "A CSV input list's affect column overrides it.")
@click.option("--estimator", type=click.Choice(["auto", "discriminator", "judge"]), default="auto", show_default=True,
              help="--from auto: the model's own affect head (auto: where it has one), or the independent judge "
                   "trained on the run's manifest and cached in RUN/eval/judge.")
@click.option("--faces", type=click.Choice(["largest", "all"]), default="largest", show_default=True,
              help="Edit the largest face (as ingest keeps; a video follows one face) or every face (a video's "
                   "each with its own tracking and smoothing).")
@click.option("--face", "face", default=None, metavar="N|X,Y",
              help="Edit one face: number N (a photo's faces largest first, a video's in the order they appear, "
                   "left to right; from 0) or the one whose box holds pixel X,Y (a video: in its first frame "
                   "with a face).")
@click.option("--color-match", "colour", is_flag=True,
              help="Shift each generated face's mean colour onto the input face's before pasting.")
@click.option("--keep-detail", is_flag=True,
              help="Add only the model's coarse change to each face, keeping the input's fine detail (sharp "
                   "results from a blurry generator; the edit's own fine texture is not transferred).")
@click.option("--paste", "paste_mode", type=click.Choice(["auto", "warp", "crop"]), default="auto", show_default=True,
              help="How an edit goes back into the frame: warp (a warping model's flow applied to the "
                   "full-resolution face: as sharp as the input), crop (the model's crop, upsampled and blended). "
                   "auto: warp for a warping model (warp-refine) unless --keep-detail, else crop.")
@click.option("--crops", is_flag=True, help="Also write the aligned input and output crops (<input>/crops/).")
@click.option("--start", type=click.FloatRange(min=0), default=None,
              help="Videos: edit from this second on; earlier frames pass through unchanged.")
@click.option("--end", type=click.FloatRange(min=0), default=None,
              help="Videos: edit up to this second; later frames pass through unchanged.")
@click.option("--batch", type=click.IntRange(min=1), default=16, show_default=True, help="Faces per model forward.")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA with bf16 when present), cpu, cuda or cuda:N.")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="CPU threads for torch and OpenCV  [default: this process's share of the cores that are idle]")
@click.option("--align", type=click.Choice(["ffhq", "bbox"]), default=None,
              help="Crop recipe, when the run does not record it (or to override it): the alignment of `fex ingest`.")
@click.option("--zoom", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Crop recipe: the ingest --zoom (> 1: tighter crops).")
@click.option("--pad", type=click.Choice(PAD_MODES), default=None,
              help="Crop recipe: the ingest --pad, how crops were filled where they left the frame.")
@click.option("--detector", type=click.Choice(["hog", "cnn"]), default=None, help="Crop recipe: the face detector.")
@click.option("--landmarks", type=click.Choice(["dlib", "fan"]), default=None, help="Crop recipe: the landmark backend.")
@click.option("--fan-weights", type=click.Path(dir_okay=False), default=None,
              help="Path of 2DFAN4-11f355bf06.pth.tar for --landmarks fan.")
@click.option("--crop-size", type=click.IntRange(min=16), default=None,
              help="Crop recipe: the manifest's crop size in pixels.")
@click.option("--ingest-sizes", type=click.IntRange(min=16), multiple=True,
              help="Crop recipe: every --size the ingest made (smaller crops were downscaled from the largest).")
@click.option("--fallback", type=click.Choice(["auto", "frame", "reject"]), default=None,
              help="Crop recipe: a photo without a detected face is taken whole (frame), only when small (auto), or rejected.")
@click.option("--steady", type=click.FloatRange(0, 1, min_open=True), default=STEADY, show_default=True,
              help="Videos: weight of the newest frame in each face's running average of the edit; lower is "
                   "steadier and lags more (about (1-W)/W frames); 1: no average.")
@click.option("--smooth", type=click.FloatRange(min=0), default=None, help="Crop recipe: video alignment smoothing sigma.")
@click.option("--redetect-every", type=click.IntRange(min=1), default=None, help="Crop recipe: video re-detection interval.")
@click.option("--max-megapixels", type=click.FloatRange(min=0, min_open=True), default=100.0, show_default=True,
              help="Refuse larger photos before decoding (decompression bombs).")
@click.option("--judge-epochs", type=click.IntRange(1), default=_JUDGE.epochs, show_default=True,
              help="--estimator judge: epochs of the judge when it has to be trained.")
@click.option("--judge-min-steps", type=click.IntRange(0), default=_JUDGE.min_steps, show_default=True,
              help="--estimator judge: at least this many judge updates.")
@click.option("--judge-holdout", type=click.FloatRange(0, 0.5), default=_JUDGE.holdout, show_default=True,
              help="--estimator judge: share of train identities the judge stops on (as `fex eval`; 0: none).")
@click.option("--judge-patience", type=click.IntRange(0), default=_JUDGE.patience, show_default=True,
              help="--estimator judge: held-out epochs without improvement before the judge stops.")
@click.option("--identity", default=None, metavar="NAME",
              help="Identity-editing models (degan): draw the faces, with their own expression, on this train "
                   "identity of the run (e.g. jaffe:KA; the run's config.json lists them). The --to targets "
                   "then only name the outputs: such a model keeps each face's expression.")
@click.option("--strict", is_flag=True, help="Exit with status 1 if any input was rejected.")
@click.option("--overwrite", is_flag=True, help="Replace the edits in DIR made with another run or settings.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def edit(run, inputs, to, out, intensity, source, estimator, faces, face, colour, keep_detail, paste_mode, crops, start,
         end, batch, device, threads, align, zoom, pad, detector, landmarks, fan_weights, crop_size, ingest_sizes,
         fallback, steady, smooth, redetect_every, max_megapixels, judge_epochs, judge_min_steps, judge_holdout, judge_patience,
         identity, strict, overwrite, quiet) -> None:
    """Change the expression of the faces in photos and videos with a trained RUN.

    RUN is a `fex train --out` folder (its latest checkpoint), an exported generator.safetensors, or a
    `fex export` .onnx file, which runs on onnxruntime instead of torch (docs/export.md).
    INPUT is an image, a video, a folder (searched recursively) or a CSV of path[,affect].

    \b
    fex edit runs/fexgan me.jpg --to joy --out edits
    fex edit runs/fexgan photos/ --to all --intensity 0.5,1,1.5 --out edits
    fex edit runs/fexgan take.mp4 --to 0.5*joy+surprise --start 2 --end 6 --out edits
    fex edit runs/fexgan take.mp4 --to schedule.csv --out edits
    fex edit runs/fexgan/generator.onnx take.mp4 --to joy --from neutral --out edits
    fex edit runs/fexgan two-people.mp4 --to joy --face 420,180 --out edits
    fex edit runs/degan me.jpg --to all --identity jaffe:KA --out edits

    Faces are found and aligned exactly as the run's training crops were made, edited, and pasted back
    into the full-resolution frame. Re-running the same command skips finished outputs. See docs/edit.md.
    """
    import cv2

    from fexdata.threads import set_torch_threads, torch_threads
    from fextrain.edit import EditOptions, edit as run_edit, format_summary

    # OpenCV's pool the same size as the model's: the model and the warps alternate. An .onnx RUN runs on
    # onnxruntime, which takes OpenCV's count, and needs no torch.
    onnx = str(run).lower().endswith(".onnx")
    cv2.setNumThreads(torch_threads(threads) if onnx else set_torch_threads(threads))
    recipe = {"align": align, "zoom": zoom, "pad": pad, "detector": detector, "landmarks": landmarks,
              "crop_size": crop_size, "sizes": tuple(ingest_sizes) or None, "fallback": fallback, "smooth": smooth,
              "redetect_every": redetect_every}
    options = EditOptions(
        to=tuple(s.strip() for spec in to for s in spec.split(",") if s.strip()), intensities=intensity,
        source=source, estimator=estimator, faces=faces, face=face, colour=colour, keep_detail=keep_detail,
        paste=paste_mode, crops=crops,
        start=start, end=end, batch=batch, device=device, max_pixels=int(max_megapixels * 1e6), recipe=recipe,
        fan_weights=fan_weights, judge=JudgeOptions(judge_epochs, judge_min_steps, judge_holdout, judge_patience),
        overwrite=overwrite, identity=identity, steady=steady)
    summary = run_edit(run, inputs, out, options, progress=not quiet, log=click.echo)
    click.echo(format_summary(summary, out))
    if strict and summary["rejects"]:
        raise click.ClickException(f"--strict: {summary['rejects']} inputs were rejected (see {out}/rejects)")

