"""Top-layer FRAME models (eq. 24) of two categories as a Bayes classifier, against logistic regression (eq. 4).

    python bench/top_layer.py                                  # faces vs natural images, ~20 min on 2 shared cores
    python bench/top_layer.py --iterations 60 --ais-temperatures 100   # longer

Trains one ``model=top_layer`` model (conv5_3 pooled to K = 512 features, grey, ``--size`` px) per
category by Algorithm 1: Extended Yale B faces (../shared/data/faces, all subjects but the held-out
ones) and BSDS500 photos (../shared/data/natural, a random part of them). Then, on held-out images of
both (the held-out subjects' faces, the other photos), with uniform priors:

- the generative Bayes classifier: p(c | I) from the two models' likelihoods, log Z(w_c) estimated by
  annealed importance sampling (``--ais-runs`` independent runs of ``--ais-chains`` chains, pooled);
  its accuracy with each run's log Z alone shows how much the estimate's error moves the decision;
- the same weights w_c with the bias b_c fitted on the training images instead of log Z (a 1-D
  logistic regression on w_1 . F - w_2 . F): the direction the generative models learned, without
  the error of log Z;
- logistic regression on the same pooled features (scikit-learn, standardised): eq. (4) trained
  directly, discriminatively.

Prints a table (markdown), writes ``metrics.json`` and ``samples.png`` (per category: training
images, then the chains of Algorithm 1, then AIS's end states) under ``--out``. The training images
are given to the data module as folders of symbolic links in the output folder, never copied.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torchvision.utils import save_image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.score_faces_vs_natural import link_folder  # noqa: E402
from frame.classify import bayes_posterior, check_category_models, log_likelihoods, logits, normalised_priors, top_layer_features  # noqa: E402
from frame.data.images import list_images  # noqa: E402
from frame.partition import annealed_log_z, summarise  # noqa: E402
from frame.run.checkpoints import load_model  # noqa: E402
from frame.run.fit import train  # noqa: E402
from frame.scoring import load_folder  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--faces", default=str(DATA / "faces"))
    p.add_argument("--natural", default=str(DATA / "natural"))
    p.add_argument("--holdout", default="yaleB35,yaleB36,yaleB37,yaleB38,yaleB39", help="held-out face subjects (file-name prefixes)")
    p.add_argument("--n-train", type=int, default=200, help="training images per category")
    p.add_argument("--n-test", type=int, default=200, help="held-out images per category")
    p.add_argument("--size", type=int, default=32, help="image side (conv5_3 maps of size/16)")
    p.add_argument("--iterations", type=int, default=25, help="learning iterations of Algorithm 1 per category")
    p.add_argument("--chains", type=int, default=8)
    p.add_argument("--langevin", type=int, default=5, help="Langevin steps per iteration")
    p.add_argument("--lr", type=float, default=20.0)
    p.add_argument("--ais-runs", type=int, default=2, help="forward AIS runs (seeds) per mode")
    p.add_argument("--ais-mala-step", type=float, default=0.1, help="delta of the Metropolis-adjusted steps")
    p.add_argument("--ais-chains", type=int, default=8)
    p.add_argument("--ais-temperatures", type=int, default=25)
    p.add_argument("--out", default=str(ROOT / "outputs/bench/top_layer"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args(argv)


def split(paths: list[Path], test: list[Path] | None, n_train: int, n_test: int, seed: int) -> tuple[list[Path], list[Path]]:
    """(n_train random training paths, n_test held-out ones): `test` if given (held-out subjects), else the rest."""
    pool = [p for p in paths if test is None or p not in set(test)]
    order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed)).tolist()
    chosen = [pool[i] for i in order]
    held = chosen[n_train:] if test is None else test
    held = [held[i] for i in torch.randperm(len(held), generator=torch.Generator().manual_seed(seed + 1)).tolist()[:n_test]]
    return sorted(chosen[:n_train]), sorted(held)


def train_category(name: str, data: str, folder: Path, args: argparse.Namespace, out: Path) -> Path:
    run = out / f"run_{name}"
    ckpt = run / "checkpoints" / "last.ckpt"
    if ckpt.is_file():
        print(f"{name}: reusing {ckpt}")
        return ckpt
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[
            "model=top_layer", f"data={data}", f"data.root={folder}", f"data.image_size={args.size}", "data.grayscale=true",
            "data.batch_size=64", f"trainer.max_steps={args.iterations}", "logger=csv", "callbacks.eval_metrics=null",
            f"model.buffer.n_chains={args.chains}", f"model.sampler.n_steps={args.langevin}", f"model.optimizer.lr={args.lr}",
            f"paths.output_dir={run}", f"seed={args.seed}",
        ])
    start = time.time()
    train(cfg)
    print(f"{name}: trained in {time.time() - start:.0f} s")
    return ckpt


def accuracy(predicted: torch.Tensor, labels: torch.Tensor) -> float:
    return float((predicted == labels).double().mean())


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    holdout = [h for h in args.holdout.split(",") if h]
    faces = list_images(args.faces)
    splits = {
        "faces": split(faces, [p for p in faces if any(p.name.startswith(h) for h in holdout)], args.n_train, args.n_test, args.seed),
        "natural": split(list_images(args.natural), None, args.n_train, args.n_test, args.seed),
    }
    data_config = {"faces": "faces", "natural": "natural"}
    start = time.time()
    ckpts = {name: train_category(name, data_config[name], link_folder(tr, out / f"train_{name}"), args, out)
             for name, (tr, _) in splits.items()}
    train_s = time.time() - start
    models = {name: load_model(path) for name, path in ckpts.items()}
    check_category_models(models)
    names = list(models)
    first = models[names[0]]

    def features(part: int):
        xs, feats, labels = [], [], []
        for c, name in enumerate(names):
            folder = link_folder(splits[name][part], out / f"{('train', 'heldout')[part]}_{name}")
            _, images = load_folder(folder, args.size, True)
            x, f = top_layer_features(first, images)
            xs.append(x), feats.append(f), labels.append(torch.full((len(x),), c))
        return torch.cat(xs), {k: torch.cat([f[k] for f in feats]) for k in feats[0]}, torch.cat(labels)

    x_train, f_train, y_train = features(0)
    x_test, f_test, y_test = features(1)

    # log Z(w_c): forward AIS (from q) exact (MALA) and unadjusted (the training sampler's steps), several seeds
    # each; reverse AIS from the model's own chains (Algorithm 1's samples of p), which errs the other way
    modes = {
        f"forward, MALA delta={args.ais_mala_step}": dict(step_size=args.ais_mala_step, metropolis=True),
        "forward, unadjusted delta=0.3": dict(step_size=0.3, metropolis=False),
        "reverse from the chains, unadjusted delta=0.3": dict(step_size=0.3, metropolis=False, reverse=True),
    }
    start = time.time()
    runs: dict[str, dict[str, list]] = {mode: {} for mode in modes}
    for mode, options in modes.items():
        options = dict(options)
        reverse = options.pop("reverse", False)
        for c, (name, model) in enumerate(models.items()):
            chains = model.buffer.chains
            runs[mode][name] = [
                annealed_log_z(model.energy, model.sampler, tuple(chains.shape[1:]), args.ais_chains, args.ais_temperatures,
                               generator=torch.Generator().manual_seed(1000 * c + r), start=chains if reverse else None, **options)
                for r in range(1 if reverse else args.ais_runs)
            ]
            print(f"AIS {mode}, {name}: " + ", ".join(f"{e.log_z:.6g}" for e in runs[mode][name]), flush=True)
    ais_s = time.time() - start
    priors = normalised_priors(names)
    # log Z of each mode: the runs pooled (one AIS of all their chains)
    log_zs = {}
    for mode in modes:
        values = []
        for name in names:
            est = runs[mode][name]
            pooled_z = summarise(torch.cat([e.log_weights for e in est])).log_z
            values.append(-pooled_z if "reverse" in mode else pooled_z)
        log_zs[mode] = torch.tensor(values, dtype=torch.float64)
    main_mode = list(modes)[1]
    log_z = log_zs[main_mode]
    posterior = bayes_posterior(log_likelihoods(models, x_test, f_test, log_z), priors)
    scores = logits(models, f_test, priors, log_z)
    agreement = float((posterior - torch.softmax(scores, 1)).abs().max())
    accuracies = {mode: (accuracy(logits(models, f_train, priors, z).argmax(1), y_train), accuracy(logits(models, f_test, priors, z).argmax(1), y_test))
                  for mode, z in log_zs.items()}
    per_run = {mode: [accuracy(logits(models, f_test, priors, torch.tensor([runs[mode][n][r].log_z for n in names])).argmax(1), y_test)
                      for r in range(len(runs[mode][names[0]]))] for mode in modes}
    # the generative direction w_1 - w_2 with its bias fitted on the training images instead of log Z
    margin_train = logits(models, f_train, priors, torch.zeros(2))
    margin_test = logits(models, f_test, priors, torch.zeros(2))
    bias_fit = LogisticRegression(C=1e6, max_iter=10000).fit((margin_train[:, 1:] - margin_train[:, :1]).numpy() / 1e4, y_train.numpy())
    fitted_acc = float(bias_fit.score((margin_test[:, 1:] - margin_test[:, :1]).numpy() / 1e4, y_test.numpy()))
    fitted_bias = -float(bias_fit.intercept_[0]) / float(bias_fit.coef_[0, 0]) * 1e4  # the margin where p = 1/2
    # eq. (4) trained directly on the same pooled features
    vec_train = first.energy.feature_vector(f_train).double().numpy()
    vec_test = first.energy.feature_vector(f_test).double().numpy()
    logistic = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(vec_train, y_train.numpy())
    logistic_acc = float(logistic.score(vec_test, y_test.numpy()))
    logistic_train = float(logistic.score(vec_train, y_train.numpy()))

    rows = [(f"generative Bayes, log Z by AIS {mode}", *accuracies[mode],
             f"{min(per_run[mode]):.3f} - {max(per_run[mode]):.3f}" if len(per_run[mode]) > 1 else "") for mode in modes]
    rows += [("generative w_c, bias fitted on the training set", None, fitted_acc, ""),
             ("logistic regression on F(I) (eq. 4, discriminative)", logistic_train, logistic_acc, "")]
    print(f"\n{len(y_train)} training / {len(y_test)} held-out images ({', '.join(f'{n} {int((y_test == c).sum())}' for c, n in enumerate(names))}), "
          f"{args.size} px grey, conv5_3 pooled (K = {vec_train.shape[1]}), uniform priors")
    print("| classifier | train acc | held-out acc | held-out acc, each AIS run alone |\n|---|---|---|---|")
    for label, tr, te, spread in rows:
        print(f"| {label} | {'' if tr is None else f'{tr:.3f}'} | {te:.3f} | {spread} |")
    print("\n| category | log Z estimate | runs | sd over runs | stderr per run (mean) | ESS / chains (mean) | MH acceptance |\n|---|---|---|---|---|---|---|")
    for mode in modes:
        for i, name in enumerate(names):
            est = runs[mode][name]
            values = torch.tensor([e.log_z for e in est], dtype=torch.float64)
            sd = f"{float(values.std()):.3g}" if len(values) > 1 else ""
            print(f"| {name}, {mode} | {float(log_zs[mode][i]):.6g} | {len(est)} | {sd} | {sum(e.stderr for e in est) / len(est):.3g} | "
                  f"{sum(e.ess for e in est) / len(est):.2f} / {len(est[0].log_weights)} | {sum(e.acceptance for e in est) / len(est):.2f} |")
    for i, name in enumerate(names):  # Jensen: E_q[f] <= log Z <= E_p[f]
        with torch.no_grad():
            e_p = float(models[name].energy(models[name].buffer.chains).double().mean())
        print(f"{name}: E_p[f] over Algorithm 1's chains = {e_p:.6g} (log Z <= E_p[f]; forward AIS with one temperature gives ~E_q[f] <= log Z)")
    for mode in modes:
        print(f"log Z({names[1]}) - log Z({names[0]}), {mode}: {float(log_zs[mode][1] - log_zs[mode][0]):.6g}")
    print(f"the bias fitted on the training set puts the decision at w_{names[1]}.F - w_{names[0]}.F = {fitted_bias:.6g}")
    print(f"max |Bayes posterior - softmax(logits)| = {agreement:.2g}")
    print(f"training {train_s:.0f} s, AIS {ais_s:.0f} s")

    # the grid: per category a row of training images, a row of Algorithm 1's chains, a row of AIS end states
    n = args.chains
    grid = []
    for c, name in enumerate(names):
        model = models[name]
        grid += [model.to_images(x_train[y_train == c][:n]), model.to_images(model.buffer.chains[:n]),
                 model.to_images(runs[main_mode][name][0].chains[:n])]
    save_image(torch.cat([g.cpu() for g in grid]), out / "samples.png", nrow=n, padding=2, pad_value=1.0)
    metrics = {
        "accuracy": {mode: {"train": tr, "heldout": te, "heldout_per_run": per_run[mode]} for mode, (tr, te) in accuracies.items()},
        "fitted_bias_heldout": fitted_acc, "logistic_heldout": logistic_acc, "logistic_train": logistic_train, "agreement": agreement,
        "log_z": {mode: {n: {"estimate": float(log_zs[mode][i]), "runs": [e.log_z for e in runs[mode][n]], "stderr": [e.stderr for e in runs[mode][n]],
                             "ess": [e.ess for e in runs[mode][n]], "acceptance": [e.acceptance for e in runs[mode][n]]}
                         for i, n in enumerate(names)} for mode in modes},
        "fitted_bias": fitted_bias, "train_s": train_s, "ais_s": ais_s, "args": vars(args),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    print(f"wrote {out / 'samples.png'}, {out / 'metrics.json'}")
    return metrics


if __name__ == "__main__":
    main()
