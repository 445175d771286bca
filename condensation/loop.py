"""The condensation loop of docs/algorithms.md#the-condensation-loop (reference
he-y/Multisize-Dataset-Condensation/condense_reg.py) (IDC + MDC), used by condense_reg.py, condense.py and
condense_reg_mp.py. The step functions (``class_update``, ``network_update``) are module level so
that benchmarks/condense_step.py times exactly what the loop runs.
"""
import contextlib
import copy
import json
import math
import os
import time

import torch
from tqdm import tqdm

from condensation.batched import CLASS_CHUNK, check_class_batch, class_batched_losses, step_positions
from condensation.dream import dream_batches, init_picks
from condensation.matchloss import grad_match_loss, matched_params, matchloss
from condensation.mls import MEASURES, RULES, measure_of, mls_record
from condensation.parallel import ClassStreams, coast, no_stream
from condensation.run_files import (METRICS, check_resume_args, check_run_folder, load_checkpoint,
                                    load_reference_resume, read_metrics, reset_metrics, save_checkpoint,
                                    truncate_metrics)
from condensation.synthesizer import Synthesizer, grid_png, save_grid
from data.condensed import save_condensed
from evaluation.protocol import evaluate_set
from condensation.mls.regularizer import Regularizer, average_featlog, is_window, subset_prefix_sizes
from cli.arguments import interrupt_note, rerun
from utils.config import Logger, jsonable, pack_rng, rng_state, set_rng_state, set_seed, unpack_rng
from utils.errors import StopTraining, UserError
from training.precision import amp_for
from utils.runlock import FolderLock
from utils.files import (append_jsonl, atomic_save, atomic_write_text, check_output_dir, clean_stale_temps, nonfinite,
                         save_config)
from tracking.client import Tracker, condensation_series, export_path, mdc_run_name, open_tracker, tracker_of
from training.epochs import train_one_epoch


def _rounded(v):
    """Nested lists of floats rounded to 2 decimals for the log (None and ints unchanged)."""
    if isinstance(v, list):
        return [_rounded(x) for x in v]
    return round(v, 2) if isinstance(v, float) else v


class DivergedError(UserError):
    """A non-finite loss: the run stops, its last checkpoint stays intact."""


def window_measure(model, params, a_real, y_real, a_syn, y_syn, sizes, *, metric="mse", idx_from=0, idx_to=-1,
                   mls_metric="feature"):
    """The MLS measure of every prefix in ``sizes`` at a window iteration, floats only: ``mls_metric`` names a
    per-class-step measure of ``condensation.mls.MEASURES`` (``feature``, the feature distance of MDC;
    ``gradient``; condensation/mls/measures.py) or is the run's measure object itself."""
    measure = MEASURES.of(mls_metric)() if isinstance(mls_metric, str) else mls_metric
    return measure.class_step(model, params, a_real, y_real, a_syn, y_syn, sizes, metric=metric, idx_from=idx_from,
                              idx_to=idx_to)


def class_update(model, params, aug, opt_img, real, y_real, syn, y_syn, *, metric="mse", subsets=(),
                 frozen=0, feat_sizes=None, idx_from=0, idx_to=-1, fast=None, args=None, mls_metric="feature",
                 amp=contextlib.nullcontext):
    """One per-class image step (MDC reference condense_reg.py; docs/algorithms.md#the-condensation-loop,
    #feature-distance-per-subset, #adaptive-subset-loss).

    Normalize + DiffAug (batch-shared parameters) on cat(real, syn); the MLS measure of every prefix in
    ``feat_sizes`` (window iterations, ``window_measure``); gradient matching with the subset
    term of each prefix in ``subsets`` and the first ``frozen`` decoded images detached; then
    zero_grad + backward + step of the single image optimiser. ``args`` set and ``args.match``
    not grad → the reference's ``matchloss`` dispatch (feat mode). ``amp``: the context of the network
    passes (``training.precision.autocast``). Returns (detached loss, d or None).
    """
    n = real.shape[0]
    a = aug(torch.cat([real, syn], 0))
    a_real, a_syn = a[:n], a[n:]
    d = None
    with amp():
        if feat_sizes:
            d = window_measure(model, params, a_real, y_real, a_syn, y_syn, feat_sizes, metric=metric,
                               idx_from=idx_from, idx_to=idx_to, mls_metric=mls_metric)
        if args is not None and args.match != "grad":
            loss = matchloss(args, a_real, a_syn, y_real, y_syn, model)
        else:
            loss = grad_match_loss(model, a_real, y_real, a_syn, y_syn, params, metric, subsets=subsets,
                                   syn_frozen=frozen if frozen > 0 else None, fast=fast)
    opt_img.zero_grad()
    loss.backward()
    opt_img.step()
    return loss.detach(), d


class RealBatches:
    """Loader adapter: ``n`` (None: endless) all-class batches of ``ClassSampler.sample()``."""

    def __init__(self, sampler, n=None):
        self.sampler, self.n = sampler, n

    def __iter__(self):
        i = 0
        while self.n is None or i < self.n:
            yield self.sampler.sample()
            i += 1


def network_update(model, opt_net, sampler, aug_rand, args, amp=contextlib.nullcontext):
    """``n_data`` real samples in all-class batches of batch_real, per-sample DiffAug and CutMix
    (p = mix_p), repeated net_epoch times (MDC reference condense_reg.py, condense; docs/algorithms.md#network-update);
    nothing when n_data <= 0.
    As the reference's ``train_epoch`` over its real loader, one update takes at most one loader
    length of batches (``ClassSampler.batches_per_pass``; in mp mode the partial batch is dropped).
    Returns the last epoch's unread sums and sample count (``train_one_epoch(metrics="device")``: the
    reference's ``top1``/``loss`` of the network, read by the loop together with its matching loss), or None."""
    if args.n_data <= 0:
        return None
    out = None
    for _ in range(args.net_epoch):
        out = train_one_epoch(model, RealBatches(sampler, sampler.batches_per_pass()), opt_net, aug=aug_rand,
                              mixup=args.mixup_net, mix_p=args.mix_p, beta=args.beta, n_data=args.n_data,
                              metrics="device", amp=amp)
    return out


class Condenser:
    def __init__(self, args, device, save_dir, *, load_real, diffaug, model_fn, classes=None, save_plain=False,
                 eval_enabled=True, world=None):
        self.args, self.device, self.save_dir = args, device, save_dir
        self.classes = list(range(args.nclass)) if classes is None else list(classes)
        # torchrun with --global_mls/--exact: the partitions step together and gather their MLS logs
        self.world = world
        # --exact (condensation/parallel.py): per-class random streams, and the image steps of the classes of
        # other ranks replayed on this shard's momentum in the single-process order (all classes, ascending)
        self.streams = ClassStreams(args.seed, self.classes, device) if args.exact else None
        self.stream = self.streams.of_class if self.streams else no_stream
        self.order = list(range(args.nclass)) if args.exact else self.classes
        self.local = {c: r for r, c in enumerate(self.classes)}
        self.closed_coast = getattr(args, "coast", "replay") == "closed"
        # --precision (training/precision.py) and --class_batch (condensation/batched.py), checked before any work
        self.amp = amp_for(getattr(args, "precision", "fp32"), device)
        self.class_batch = bool(getattr(args, "class_batch", False))
        self.fast = None  # grad_match_loss's subset formulation (False: the reference's; benchmarks/condense_step.py)
        if self.class_batch:  # on a throw-away model, drawn without touching the run's random streams
            saved = rng_state(device)
            check_class_batch(args, model_fn())
            set_rng_state(saved, device)
        self.model_fn, self.save_plain = model_fn, save_plain
        self.mdc = bool(args.adaptive_reg)
        self.f2 = max(1, args.factor) ** 2
        self.eval_on = eval_enabled and args.eval_during and not args.test
        check_output_dir(save_dir, "run folder", "--save_dir")  # before any work; creates nothing
        self.lock = FolderLock(save_dir, getattr(args, "lock_wait", 0), enabled=getattr(args, "folder_lock", True))
        try:
            check_run_folder(args, save_dir)  # never another run's folder, never inside the dataset
        except UserError as e:
            self.lock.check_free(e)  # a folder in use right now: say by whom
        self.log = Logger(save_dir)
        self.metrics = os.path.join(save_dir, METRICS)
        self.tracker = Tracker(None)  # opened once the run knows where it starts (``open_tracking``)
        self.net_sums = None  # the last network update's unread (sums, n): the reference's top1/loss
        self.sampler = load_real(args, device)
        self.aug, self.aug_rand = diffaug(args, device)
        self.synset = Synthesizer(args, args.nclass, args.nch, args.size, device, self.classes,
                                  stream=self.streams.of_class if self.streams else None)
        # MLS switches (MDC Tables 3, 5; the rule and the measure are entries of condensation.mls, their
        # hyper-parameters read from args): a random MLS is keyed by the seed (and the class when class-wise)
        hp = RULES.of(args.mls_select).hparams_of(args) if self.mdc else {}
        self.regs = [Regularizer(args.ipc, args.adaptive_period, select=args.mls_select, freeze=args.mls_freeze,
                                 random_key=f"{args.seed}:{c}" if args.adaptive_class_wise else args.seed,
                                 hparams=hp) for c in self.classes] if self.mdc else []
        self.prefix = subset_prefix_sizes(args.ipc, args.factor) if self.mdc else []
        # the window measure: none when the rule reads none (random); per class step (``self.measure``: feature,
        # gradient) or per inner step (``self.inner_measure``: accuracy)
        m = measure_of(args) if self.mdc else None
        m = m(sampler=self.sampler, classes=self.classes, args=args, norm=self.aug[0]) if m is not None else None
        self.measured = m is not None
        self.measure = m if m is not None and m.per_step else None
        self.inner_measure = m if m is not None and not m.per_step else None
        self.opt_img = torch.optim.SGD([self.synset.data], lr=args.lr_img, momentum=args.mom_img)
        self.model = self.opt_net = self.params = None
        self.start_it, self.last_saved = 0, None
        self.open_point = None  # the kept records of a save point a kill left open (``truncate_metrics``)
        self.n_iter = args.niter * 100 // args.inner_loop
        if args.resume or args.load_checkpoint:
            try:  # a broken resume state is refused before the folder is touched (read again below)
                self._resume_state()
            except UserError as e:  # unless another process holds the folder: its state is not final
                self.lock.check_free(e)
        # the inputs are good: the run folder may appear, and it is this process's until the run ends
        # (utils/runlock.py); a second process refuses or waits here, before it reads the resume state
        self.lock.acquire()
        # from here on an interruption (Ctrl-C, SIGTERM) names what this folder keeps (cli.arguments.interrupt_note)
        interrupt_note(self.interrupted)
        try:
            check_run_folder(args, save_dir)  # again: the process that held the folder may have left a run in it
            clean_stale_temps(save_dir, self.log)
            self._resume_or_init()
        except (UserError, StopTraining):
            # a run that fails its checks (e.g. too few real images to initialise) leaves nothing it created
            self.lock.remove_created()
            raise
        except BaseException:
            self.lock.release()
            raise

    def release(self):
        """Let the run folder go (``utils.runlock``): after the run, or when the run stops (an interruption
        included: the tracker process is closed, what it was sent is kept)."""
        self.tracker.close()
        self.lock.release()  # the interruption note stays: what the folder keeps is still what it says

    def interrupted(self):
        """The text of an interruption's line (``cli.arguments.cli``): the checkpoint this folder keeps and the
        command that continues from it (docs/failures.md#an-interruption-is-one-line)."""
        again = rerun("--resume", "--load_checkpoint")
        if self.last_saved:
            return (f"the checkpoint of iteration {self.last_saved} is kept in {self.save_dir}; {again} to continue "
                    "from it")
        return f"no checkpoint was written yet in {self.save_dir}; {again} to start the run again"

    # ---- experiment tracking (tracking/client.py) ---------------------------------------------
    def open_tracking(self):
        """Aim or TensorBoard, after the resume decision: a resumed run continues its Aim run and re-tracks
        from its checkpoint on; hyper-parameters = ``args.yaml``. Images (``init.png``, ``aug.png``) at a
        fresh start only."""
        a = self.args
        first = self.start_it + 1 if self.start_it > 0 else None  # the first step a resumed run tracks again
        if first is not None and self.open_point is not None:  # it re-does the open save point's step
            first = self.start_it
        self.tracker = open_tracker(a, kind=tracker_of(a), folder=self.save_dir, experiment=a.exp_name,
                                    name=mdc_run_name(a), hparams=jsonable(vars(a)), resume_from=first,
                                    warn=self.log, keep_hash=not a.test,
                                    mapper=lambda rec: condensation_series(rec, self.classes, a.net_type))
        self.tracker.text("precision", getattr(a, "precision", "fp32"), first or 0)
        for rec in self.open_point or []:  # the step's records that stay: tracked again after the purge
            self.tracker.record(rec)

    def track_start_images(self):
        """YOCO ``condense.py``'s ``init.png`` and ``aug.png`` (the matching augmentation of class 0's images, drawn
        with the random states saved and restored, so the run's draws are untouched)."""
        if not self.tracker.active:
            return
        self.tracker.image("init.png", grid_png(self.synset.data), 0, caption="init")
        saved = rng_state(self.device)
        try:
            with torch.no_grad():
                x = self.aug[1](self.synset.sample(0)[0].detach())  # DiffAug without Normalize: viewable pixels
            self.tracker.image("aug.png", grid_png(x), 0, caption="aug")
        finally:
            set_rng_state(saved, self.device)

    def record(self, rec):
        """One record of the run: ``metrics.jsonl``, and the tracker (``condensation_series``)."""
        append_jsonl(self.metrics, rec)
        self.tracker.record(rec)

    def finish_tracking(self):
        """The reference's ``aim_export`` when a tracked invocation ends (complete, or ``--stop_after``):
        ``<run name>_<time>.txt`` beside the data."""
        if self.tracker.active:
            a = self.args
            self.tracker.export(export_path(self.save_dir, mdc_run_name(a)), str(jsonable(vars(a))), self.log.path)

    # ---- setup -------------------------------------------------------------------------------
    def _resume_or_init(self):
        args = self.args
        ck = None
        if args.resume or args.load_checkpoint:
            ck, ref = self._resume_state()
            if ck is None and ref is not None:
                self.start_it = ref[0]
                self.synset.load(ref[1])
                self.log(f"resumed images and iteration {ref[0]} only (reference-style folder)")
        if ck is not None:
            self.synset.load(ck["data"])
            self.opt_img.load_state_dict(ck["opt_img"])
            for reg, st in zip(self.regs, json.loads(ck["regs"]) if ck["regs"] else []):
                reg.load_state_dict(st)
            self.sampler.load_state_dict(ck["sampler"])
            if ck["model"] is not None:
                self.new_model()
                self.model.load_state_dict(ck["model"])
                self.opt_net.load_state_dict(ck["opt_net"])
            set_rng_state(unpack_rng(ck["rng"]), self.device)
            if self.streams:
                self.streams.load_state_dict(ck.get("streams") or {})
            self.start_it = self.last_saved = int(ck["it"])
            self.open_point = truncate_metrics(self.save_dir, self.start_it)
            self.log(f"resumed from {self.save_dir} at iteration {self.start_it}")
        save_config(args, os.path.join(self.save_dir, "args.yaml"))
        self.open_tracking()
        if self.world is not None:  # partitions that step together must resume at one iteration
            its = self.world.gather(self.start_it)
            if len(set(its)) > 1:
                raise UserError("the partitions resumed at different iterations (" + ", ".join(
                    f"rank {r}: {it}" for r, it in enumerate(its)) + "): a rank was killed while the others were "
                    "saving; relaunch with --resume after restoring the checkpoints of one iteration, or start again")
        if self.start_it > 0:
            return
        if args.resume or args.load_checkpoint:
            self.log(f"no checkpoint in {self.save_dir}: starting from scratch")
        reset_metrics(self.save_dir)
        self.log(f"condensing {len(self.classes)} classes x {args.ipc} images (factor {args.factor}) into "
                 f"{self.save_dir} on {self.device}; {self.n_iter} outer iterations")
        init, picked = args.init, None
        if args.slct_type == "dream":  # k-means picks the init images (MDC reference
        # query_strategies/kmeans_sampling.py, KMeansSampling; docs/algorithms.md#dream)
            init, picked = init_picks(args, self.model_fn(), self.sampler, self.classes, args.ipc * self.f2)
        self.synset.init(self.sampler, init, args.start_idx, picked)
        save_grid(os.path.join(self.save_dir, "init.png"), self.synset.data)
        self.track_start_images()
        self.evaluate(0)

    def _resume_state(self):
        """(checkpoint or None, reference-style (it, data) or None) of the run folder, its settings and the
        metrics a checkpoint resume rewrites checked."""
        check_resume_args(self.args, self.save_dir)
        ck = load_checkpoint(self.save_dir)
        if ck is not None:
            read_metrics(self.save_dir)
        return ck, (load_reference_resume(self.save_dir) if ck is None else None)

    def new_model(self):
        self.model = self.model_fn()
        self.model.train()
        a = self.args
        self.opt_net = torch.optim.SGD(self.model.parameters(), a.lr, momentum=a.momentum, weight_decay=a.weight_decay)
        self.params = matched_params(self.model, a.bias, a.fc) if a.match == "grad" else None

    def fresh_net(self):
        """Fresh random network + ``early`` epochs on real data (MDC reference condense_reg.py, condense;
        docs/algorithms.md#the-condensation-loop)."""
        self.new_model()
        a = self.args
        n_batches = self.sampler.batches_per_pass()
        for _ in range(a.early):
            train_one_epoch(self.model, RealBatches(self.sampler, n_batches), self.opt_net, aug=self.aug_rand,
                            mixup=a.mixup_net, mix_p=a.mix_p, beta=a.beta, metrics=False, amp=self.amp)
        self.model.train()

    # ---- the loop (MDC reference condense_reg.py, condense; docs/algorithms.md#the-condensation-loop) ----------------
    def run(self):
        args = self.args
        n_iter, P = self.n_iter, args.adaptive_period
        it_log = max(1, n_iter // 50)
        it_test = {100 * k for k in range(1, args.niter // 100 + 1)} | {n_iter}  # from niter (mdc 15 in
        # docs/reference-differences.md#reference-quirks-kept)
        fix_iter = max(1, args.fix_iter)
        if self.start_it >= n_iter:
            self.log(f"nothing to do: {self.save_dir} is complete ({n_iter} iterations)")
            return
        if self.open_point is not None:
            self.log(f"it {self.start_it}: the save point's evaluations were cut off; running them again")
            self.close_point(self.start_it)
        bar = tqdm(range(self.start_it, n_iter), desc="condense", initial=self.start_it, total=n_iter,
                   dynamic_ncols=True)
        self.t_start = time.time()
        self.last_log = (self.start_it - 1, self.t_start)  # (iteration, time) of the previous loss record
        for t in bar:
            if t % fix_iter == 0 or self.model is None:
                self.fresh_net()
            self.synset.clamp_()  # the only clamp: once per outer iteration
            window = self.mdc and is_window(t, P)
            loss_sum, featlog = self.outer_iteration(t, window)
            loss_sum, net = self.read_losses(loss_sum)
            finite = bool(torch.isfinite(self.synset.data).all())
            if self.world is not None:  # the loss of the whole set (all nclass classes); every rank stops on a NaN
                parts = self.world.gather((loss_sum, finite))
                loss_sum, finite = sum(p[0] for p in parts), all(p[1] for p in parts)
            n_classes = args.nclass if self.world is not None else len(self.classes)
            loss = loss_sum / (n_classes * args.inner_loop)
            if not math.isfinite(loss) or not finite:
                raise DivergedError(self._diverged(f"non-finite matching loss ({loss}) at iteration {t}"))
            bar.set_postfix(loss=f"{loss:.3f}")
            if net is not None:  # the reference tracked its network's top1/loss every outer iteration
                self.record({"type": "net", "it": t + 1, "top1": net[0], "loss": net[1]})
            if t % it_log == 0:
                self.log_loss(t, loss)
            if window and not args.test:
                self.select_mls(t, featlog)
            if (t + 1) in it_test or (self.mdc and (t + 1) % P == 0) or t + 1 == args.stop_after:
                self.save_point(t + 1)
            if t + 1 == args.stop_after:
                self.log(f"stopped after iteration {t + 1} (--stop_after); continue with --resume")
                return

    def read_losses(self, loss_sum):
        """The matching loss Σ and the last network update's (top1, loss), in ONE read from the device."""
        sums, self.net_sums = self.net_sums or (None, 0), None
        if sums[0] is None:
            return loss_sum.item(), None
        vals = torch.cat([loss_sum.detach().double().view(1), sums[0].double()]).tolist()
        n = sums[1]
        return vals[0], (vals[2] * 100.0 / n, vals[1] / n)

    def outer_iteration(self, t, window):
        """inner_loop × (per-class image steps, then the network update). Returns (Σ loss, featlog)."""
        args, syn, model = self.args, self.synset, self.model
        loss_sum = torch.zeros((), device=self.device)
        featlog = [[] for _ in self.classes]
        if args.test:  # debug: skip the inner loop (MDC reference argument.py --test)
            return loss_sum, featlog
        batches = None
        for k in range(args.inner_loop):
            if args.slct_type == "dream" and k % args.interval == 0:  # MDC reference
            # query_strategies/kmeans_sampling.py, KMeansSampling; docs/algorithms.md#dream
                batches = dream_batches(model, self.sampler, self.classes, args.batch_real)
            step = self.batched_inner_step if self.class_batch else self.inner_step
            for loss in step(t, window, batches, featlog):  # the class losses in step order
                loss_sum += loss
            if window and self.inner_measure is not None:  # after the class steps, before the network update
                for r, acc in enumerate(self.inner_measure.inner_step(model, syn, args.ipc)):
                    featlog[r].append(acc)
            if args.n_data > 0:
                try:
                    self.net_sums = network_update(model, self.opt_net, self.sampler, self.aug_rand, args,
                                                   amp=self.amp)
                except StopTraining as e:
                    raise DivergedError(self._diverged(f"network update at iteration {t}: {e}"))
        return loss_sum, featlog

    def class_terms(self, t, r, window):
        """The MDC terms of class block ``r``'s step: (subset prefix sizes, frozen decoded images, whether the
        step measures its prefixes) (MDC reference reg_ipcx.py; docs/algorithms.md#mls-selection-and-freezing)."""
        subsets, frozen = (), 0
        if self.mdc:
            reg = self.regs[r]
            reg.update_status(t)
            F = reg.get_freeze_ipc()
            frozen = F * self.f2 if F > 0 else 0
            subsets = [x * self.f2 for x in reg.regularized()]
        return subsets, frozen, window and self.measure is not None

    def real_batch(self, c, r, batches):
        return batches[r] if batches is not None else self.sampler.class_sample(c)

    def inner_step(self, t, window, batches, featlog):
        """The per-class image steps of one inner step, one after the other (MDC reference condense_reg.py, condense;
        docs/algorithms.md#the-condensation-loop). Returns the classes' losses in step order."""
        args, syn = self.args, self.synset
        losses = []
        idle = 0  # image steps of other ranks' classes since this shard's last step (--exact)
        for c in self.order:
            r = self.local.get(c)
            if r is None:
                idle += 1
                continue
            coast(self.opt_img, idle, self.closed_coast)
            idle = 0
            subsets, frozen, per_step = self.class_terms(t, r, window)
            with self.stream(c):
                real, y_real = self.real_batch(c, r, batches)
                x_syn, y_syn, _ = syn.sample(r)
                loss, d = class_update(self.model, self.params, self.aug, self.opt_img, real, y_real, x_syn, y_syn,
                                       metric=args.metric, subsets=subsets, frozen=frozen,
                                       feat_sizes=self.prefix if per_step else None, idx_from=args.idx_from,
                                       idx_to=args.idx_to, args=args, mls_metric=self.measure, amp=self.amp,
                                       fast=self.fast)
            losses.append(loss)
            if d is not None:
                featlog[r].append(d)
        coast(self.opt_img, idle, self.closed_coast)
        return losses

    def batched_inner_step(self, t, window, batches, featlog):
        """``inner_step`` with all classes' matching losses in one batched pass (``--class_batch True``,
        condensation/batched.py): the positions, then the random draws and augmentations in the sequential
        order, then the batched losses and one backward, then the optimiser steps in the sequential order."""
        args, syn, model = self.args, self.synset, self.model
        steps = [(c, self.local[c]) for c in self.order]
        X = step_positions(self.opt_img, syn.data, [syn.rows(r) for _, r in steps]).requires_grad_(True)
        groups = {}  # classes sharing (subsets, frozen, shapes) form one batch
        for c, r in steps:
            subsets, frozen, per_step = self.class_terms(t, r, window)
            real, y_real = self.real_batch(c, r, batches)
            x_syn, y_syn, _ = syn.sample(r, block=X[syn.rows(r)])
            a = self.aug(torch.cat([real, x_syn], 0))
            a_real, a_syn = a[:real.shape[0]], a[real.shape[0]:]
            if per_step:
                with self.amp():
                    featlog[r].append(window_measure(model, self.params, a_real, y_real, a_syn.detach(), y_syn,
                                                     self.prefix, metric=args.metric, idx_from=args.idx_from,
                                                     idx_to=args.idx_to, mls_metric=self.measure))
            key = (tuple(subsets), frozen, tuple(a_real.shape), tuple(a_syn.shape))
            groups.setdefault(key, []).append((r, a_real, y_real, a_syn, y_syn))
        losses, G = {}, torch.zeros_like(X)
        for (subsets, frozen, _, _), members in groups.items():
            for i in range(0, len(members), CLASS_CHUNK):  # the graphs of at most CLASS_CHUNK classes at once
                chunk = members[i:i + CLASS_CHUNK]
                with self.amp():
                    stack = [torch.stack([m[j] for m in chunk]) for j in range(1, 5)]
                    L = class_batched_losses(model, self.params, *stack, metric=args.metric, subsets=subsets,
                                             frozen=frozen)
                g, = torch.autograd.grad(L.sum(), X)
                G += g  # each chunk's gradient is zero outside its classes' rows
                losses.update({m[0]: v for m, v in zip(chunk, L.detach().float())})
        for _, r in steps:  # the optimiser steps of the sequential loop, with the batched gradients
            g = torch.zeros_like(syn.data)
            g[syn.rows(r)] = G[syn.rows(r)]
            syn.data.grad = g
            self.opt_img.step()
        syn.data.grad = None
        return [losses[r] for _, r in steps]

    def select_mls(self, t, featlog):
        """MLS re-selection at it = t+1 from the window's feature distances (MDC reference reg_ipcx.py, select_reg_ipc;
        docs/algorithms.md#mls-selection)."""
        a = self.args
        if not self.measured:  # a rule that reads no measure (--mls_select random)
            dbar = [[] for _ in self.classes]
        elif self.world is not None and not a.adaptive_class_wise:
            # one global decision: every partition's log, in class order (rank r holds phase r)
            full = [log for part in self.world.gather(featlog) for log in part]
            dbar = average_featlog(full, len(full), a.inner_loop)[:len(self.classes)]
        else:
            dbar = average_featlog(featlog, len(self.classes), a.inner_loop, a.adaptive_class_wise)
        mls = [reg.select_reg_ipc(d, it=t + 1) for reg, d in zip(self.regs, dbar)]
        rec = mls_record(t + 1, mls, dbar, [reg.last_delta for reg in self.regs], a.adaptive_class_wise)
        shown = {k: _rounded(rec[k]) for k in ("dbar", "delta", "mls")}  # the float32 values, shown to 2 decimals
        self.log(f"it {t + 1}: MLS {shown['mls']}  delta {shown['delta']}  dbar {shown['dbar']}")
        self.record(rec)

    def log_loss(self, t, loss):
        mls = [reg.regularized() for reg in self.regs]
        frz = [reg.get_freeze_ipc() for reg in self.regs]
        if self.mdc and not self.args.adaptive_class_wise:
            mls, frz = mls[0], frz[0]
        self.log(f"it {t}: matching loss {loss:.4f}" + (f"  MLS {mls}  frozen {frz}" if self.mdc else ""))
        now, (t0, then) = time.time(), self.last_log
        self.last_log = (t, now)
        self.record({"type": "loss", "it": t + 1, "loss": loss, "mls": mls, "frozen": frz,
                     "seconds": round(now - self.t_start, 2), "sec_per_it": round((now - then) / max(1, t - t0), 4)})

    def _diverged(self, what):
        last = (f"the last good checkpoint (iteration {self.last_saved}) in {self.save_dir} is intact"
                if self.last_saved else "no checkpoint was written yet")
        return f"{what}; stopped: {last}; lower --lr_img (or --lr) and start again"

    # ---- saving (MDC reference condense_reg.py, condense; docs/condensing.md#outputs-and-resume) ---------------------
    def checkpoint(self, it):
        state = {"version": 1, "it": it, "data": self.synset.data.detach().cpu(),
                 "opt_img": self.opt_img.state_dict(),
                 "model": self.model.state_dict() if self.model is not None else None,
                 "opt_net": self.opt_net.state_dict() if self.opt_net is not None else None,
                 "regs": json.dumps([r.state_dict() for r in self.regs]) if self.mdc else None,
                 "rng": pack_rng(rng_state(self.device)), "sampler": self.sampler.state_dict(),
                 "streams": self.streams.state_dict() if self.streams else None}
        save_checkpoint(self.save_dir, state)
        self.last_saved = it

    def save_point(self, it):
        bad = nonfinite(self.model.state_dict()) if self.model is not None else []
        if bad:  # never write a checkpoint that a resume would refuse
            raise DivergedError(self._diverged(f"the network holds NaN/Inf ({bad[0]}) at iteration {it}"))
        d, y = self.synset.data.detach(), self.synset.targets  # not clamped (MDC reference condense_reg.py; mdc 11 in
        # docs/reference-differences.md#reference-quirks-kept; docs/algorithms.md#the-condensation-loop)
        save_condensed(os.path.join(self.save_dir, f"data_{it}.pt"), d, y)
        if self.save_plain:
            save_condensed(os.path.join(self.save_dir, "data.pt"), d, y)
        if self.mdc:  # JSON, never a pickle (fixes mdc 1 in docs/reference-differences.md#bugs-fixed)
            atomic_write_text(os.path.join(self.save_dir, f"regularizer_{it}.json"),
                              json.dumps([r.state_dict() for r in self.regs]))
        self.checkpoint(it)
        atomic_save(it, os.path.join(self.save_dir, "it.pt"))
        self.log(f"it {it}: saved data_{it}.pt")
        self.close_point(it)

    def close_point(self, it):
        """The rest of save point ``it``, after its checkpoint: ``latest.png``, the evaluations, and last the
        ``save`` record that closes the point. A resume from ``it`` that finds no ``save`` record re-does this
        (the evaluations are seeded on their own, so the numbers are the same; docs/failures.md#resume-is-exact)."""
        png = save_grid(os.path.join(self.save_dir, "latest.png"), self.synset.data.detach())
        self.tracker.image("syn image", png, it, {"subset": "test"}, caption=f"img{it}.png")
        self.evaluate(it)
        self.record({"type": "save", "it": it, "file": f"data_{it}.pt"})
        self.open_point = None

    # ---- in-run evaluation (MDC reference condense_reg.py; docs/algorithms.md#the-condensation-loop) -----------------
    def evaluate(self, it):
        """Full set, plus every subset IPC-x with MDC when ipc ≤ 10 and f < 3 (mdc 14 in
        docs/reference-differences.md#reference-quirks-kept).

        Runs on its own seed (seed + it) and restores the global RNG states afterwards, so turning
        the evaluations on or off never changes the condensed images."""
        if not self.eval_on:
            return
        a = self.args
        ea = copy.copy(a)
        if a.eval_epochs > 0:
            ea.epochs = a.eval_epochs
        sets = [(f"ipc{a.ipc}", None)]
        if self.mdc and a.ipc <= 10 and a.factor < 3:
            sets += [(f"ipc{x}", x) for x in range(1, a.ipc)]
        saved = rng_state(self.device)
        try:
            for name, x in sets:
                set_seed(a.seed + it, a.deterministic)
                xs, ys = self.synset.decoded() if x is None else self.synset.decoded_prefix(x)
                res = evaluate_set(ea, xs, ys, self.device, log=lambda *m: None)
                for net, r in res.items():
                    self.log(f"it {it}: eval {name} [{net}] best {r['best']['mean']:.2f} ± {r['best']['std']:.2f}"
                             f"  last {r['last']['mean']:.2f}")
                    self.record({"type": "eval", "it": it, "subset": name, "net": net, "best": r["best"]["mean"],
                                 "best_std": r["best"]["std"], "last": r["last"]["mean"], "epochs": ea.epochs})
        finally:
            set_rng_state(saved, self.device)
