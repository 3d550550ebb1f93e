"""Every bad input raises IConError, and the message names the parameter and the value received."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from icontorch import (
    KNN,
    Adjacency,
    Cluster,
    CrossModal,
    DataToClass,
    DegreeWeightedCluster,
    FromCallable,
    Gaussian,
    ICon,
    IConError,
    Identity,
    PerplexityGaussian,
    PositivePairs,
    Precomputed,
    SameLabel,
    StudentT,
    joint,
    methods,
    mix_uniform,
    propagate,
    symmetrize,
)
from icontorch.divergences import DIVERGENCES

F64 = torch.float64


def feats(n: int, seed: int = 0, d: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=F64)


def with_value(x: torch.Tensor, i: int, j: int, value: float) -> torch.Tensor:
    x = x.clone()
    x[i, j] = value
    return x


Z = feats(6)
Y = torch.tensor([0, 0, 1, 1, 2, 2])
LOSS = ICon(SameLabel(dtype=F64), Gaussian(sigma=1.0))
LOG_PHI = torch.log_softmax(feats(5, d=3), dim=1)


def _bad_callable(x, y):
    return torch.softmax(x @ x.T, dim=1)  # probabilities, not log-probabilities


def test_iconerror_is_a_value_error():
    assert issubclass(IConError, ValueError)


# Each entry: (id, thunk that must raise, regex the message must match). The regexes name the
# parameter and the value (or a description of it) exactly as the message gives them.
CASES = [
    # non-finite embeddings
    ("icon-z-nan", lambda: LOSS(with_value(Z, 1, 1, float("nan")), Y),
     r"^ICon: z must be free of NaN and \+inf; got a tensor of shape \(6, 3\) containing NaN\.$"),
    ("icon-z-inf", lambda: LOSS(with_value(Z, 2, 0, float("inf")), Y),
     r"^ICon: z must be free of NaN and \+inf; got a tensor of shape \(6, 3\) containing \+inf\.$"),
    # -inf is a valid log soft assignment, so ICon lets it through to q, which rejects it, naming
    # the argument as ICon's caller passed it (z), not as q calls it (x)
    ("icon-z-neg-inf", lambda: LOSS(with_value(Z, 2, 0, float("-inf")), Y),
     r"^Gaussian: z must be finite; got a tensor of shape \(6, 3\) containing Inf\.$"),
    ("icon-candidates-nan", lambda: LOSS(Z, Y, with_value(Z, 0, 0, float("nan")), Y),
     r"^ICon: candidates must be free of NaN and \+inf; got a tensor of shape \(6, 3\) containing NaN"),
    ("gaussian-nan", lambda: Gaussian(sigma=1.0)(with_value(Z, 0, 0, float("nan"))),
     r"Gaussian: x must be finite; got a tensor of shape \(6, 3\) containing NaN"),
    ("gaussian-y-inf", lambda: Gaussian(sigma=1.0)(Z, with_value(Z, 0, 0, float("inf"))),
     r"Gaussian: y must be finite; got a tensor of shape \(6, 3\) containing Inf"),
    ("target-features-nan", lambda: ICon(Gaussian(sigma=1.0), StudentT())(Z, with_value(Z, 3, 2, float("nan"))),
     r"^Gaussian: target must be finite; got a tensor of shape \(6, 3\) containing NaN"),
    # shapes
    ("gaussian-1d", lambda: Gaussian(sigma=1.0)(torch.randn(5, dtype=F64)),
     r"Gaussian: x must have 2 dimensions; got tensor of shape \(5,\) and dtype torch\.float64"),
    ("gaussian-3d", lambda: Gaussian(sigma=1.0)(torch.randn(5, 3, 2, dtype=F64)),
     r"Gaussian: x must have 2 dimensions; got tensor of shape \(5, 3, 2\)"),
    ("gaussian-y-4d", lambda: Gaussian(sigma=1.0)(Z, torch.randn(6, 2, 3, 1, dtype=F64)),
     r"Gaussian: y must have 2 or 3 dimensions; got tensor of shape \(6, 2, 3, 1\)"),
    ("gaussian-feature-dim", lambda: Gaussian(sigma=1.0)(Z, torch.randn(4, 2, dtype=F64)),
     r"Gaussian: y must have the feature dimension of x \(3\); got tensor of shape \(4, 2\)"),
    ("gaussian-per-anchor-count", lambda: Gaussian(sigma=1.0)(Z, torch.randn(4, 5, 3, dtype=F64)),
     r"Gaussian: y must have one candidate set per anchor \(first dimension 6\); got tensor of shape \(4, 5, 3\)"),
    ("gaussian-single-point", lambda: Gaussian(sigma=1.0)(Z[:1]),
     r"Gaussian: x must hold at least 2 points when the anchors are their own candidates; "
     r"got tensor of shape \(1, 3\)"),
    ("icon-p-q-shapes", lambda: LOSS(Z, torch.tensor([0, 0, 1, 1, 2])),
     r"ICon: p and q must give matrices of the same shape; got p \(5, 5\) from target and q \(6, 6\) from z"),
    ("icon-p-q-shapes-candidates", lambda: LOSS(Z, Y, feats(4, seed=1), torch.tensor([0, 1, 2])),
     r"ICon: p and q must give matrices of the same shape; got p \(6, 3\) from target and q \(6, 4\) from z"),
    # an error of p or q called by ICon names ICon's argument (z, target, candidates, target_candidates)
    ("icon-candidates-dim", lambda: LOSS(Z, Y, feats(4, d=2), Y[:4]),
     r"^Gaussian: candidates must have the feature dimension of z \(3\); got tensor of shape \(4, 2\)"),
    ("icon-target-float", lambda: LOSS(Z, Y.double()), r"^SameLabel: target must be an integer tensor of ids"),
    ("icon-target-candidates-float", lambda: ICon(FromCallable(SameLabel()), Gaussian(sigma=1.0))(
        Z, Y, feats(4), Y[:4].double()), r"^SameLabel: target_candidates must be an integer tensor of ids"),
    ("icon-target-candidates-list", lambda: methods.clip()(Z[:3], torch.arange(3), Z[3:], [0, 1, 2]),
     r"^CrossModal: target_candidates must be a torch\.Tensor of integer ids; got 'list'\.$"),
    ("icon-cross-entropy-no-candidates", lambda: methods.cross_entropy(3, label_smoothing=0.1)(Z, Y),
     r"^ICon: candidates must be given when p's candidates are classes \(p is MixUniform\(DataToClass\)\): "
     r"pass the class prototypes as candidates, loss\(z, target=labels, candidates=prototypes\); got None\.$"),
    ("icon-target-candidates-alone", lambda: LOSS(Z, Y, target_candidates=Y),
     r"^ICon: candidates must be given with target_candidates \(q = Gaussian compares z with candidates, "
     r"with the anchors themselves when they are None\); got None\.$"),
    ("icon-candidates-alone", lambda: LOSS(Z, Y, feats(6, seed=1)),
     r"^ICon: target_candidates must be given with candidates \(p = SameLabel compares target with "
     r"target_candidates, with the anchors themselves when they are None\); got None\.$"),
    ("icon-scalar-z", lambda: LOSS(torch.tensor(1.0, dtype=F64), Y),
     r"ICon: z must be a non-empty batch; got tensor of shape \(\)"),
    ("icon-list-z", lambda: LOSS(Z.tolist(), Y), r"ICon: z must be a torch\.Tensor; got 'list'"),
    # widths and other positive parameters
    ("gaussian-sigma-zero", lambda: Gaussian(sigma=0.0),
     r"Gaussian: sigma must be a positive finite number; got 0\.0\."),
    ("gaussian-sigma-negative", lambda: Gaussian(sigma=-1.5),
     r"Gaussian: sigma must be a positive finite number; got -1\.5\."),
    ("gaussian-temperature-zero", lambda: Gaussian(temperature=0),
     r"Gaussian: temperature must be a positive finite number; got 0\."),
    ("gaussian-temperature-negative", lambda: Gaussian(temperature=-0.1, metric="cosine"),
     r"Gaussian: temperature must be a positive finite number; got -0\.1\."),
    ("gaussian-temperature-nan", lambda: Gaussian(temperature=float("nan")),
     r"Gaussian: temperature must be a positive finite number; got nan\."),
    ("gaussian-temperature-inf", lambda: Gaussian(temperature=float("inf")),
     r"Gaussian: temperature must be a positive finite number; got inf\."),
    ("gaussian-sigma-bool", lambda: Gaussian(sigma=True),
     r"Gaussian: sigma must be a positive real number; got True\."),
    ("gaussian-sigma-string", lambda: Gaussian(sigma="1"),
     r"Gaussian: sigma must be a positive real number; got '1'\."),
    ("gaussian-both", lambda: Gaussian(sigma=1.0, temperature=0.5),
     r"Gaussian: sigma, temperature must be given one at a time \(exactly one\); got \(1\.0, 0\.5\)\."),
    ("gaussian-neither", lambda: Gaussian(),
     r"Gaussian: sigma, temperature must be given one at a time \(exactly one\); got \(None, None\)\."),
    ("student-t-dof", lambda: StudentT(dof=0.0), r"StudentT: dof must be a positive finite number; got 0\.0\."),
    ("perplexity-negative", lambda: PerplexityGaussian(-3.0),
     r"PerplexityGaussian: perplexity must be a positive finite number; got -3\.0\."),
    # alpha
    ("alpha-above-one", lambda: mix_uniform(Gaussian(sigma=1.0), 1.5),
     r"MixUniform: alpha must lie in \[0, 1\]; got 1\.5\."),
    ("alpha-negative", lambda: mix_uniform(SameLabel(), -0.1),
     r"MixUniform: alpha must lie in \[0, 1\]; got -0\.1\."),
    ("alpha-not-a-number", lambda: mix_uniform(SameLabel(), "0.5"),
     r"MixUniform: alpha must be a number in \[0, 1\]; got '0\.5'\."),
    # n_neighbors and perplexity against the number of candidates
    ("knn-n-neighbors-equals-candidates", lambda: KNN(n_neighbors=5)(feats(6)),
     r"KNN: n_neighbors must be smaller than the number of candidates per anchor \(5\); got 5\."),
    ("knn-n-neighbors-above-candidates", lambda: KNN(n_neighbors=4)(feats(6), feats(3, seed=1)),
     r"KNN: n_neighbors must be smaller than the number of candidates per anchor \(3\); got 4\."),
    ("knn-n-neighbors-include-self", lambda: KNN(n_neighbors=6, include_self=True)(feats(6)),
     r"KNN: n_neighbors must be smaller than the number of candidates per anchor \(6\); got 6\."),
    ("knn-n-neighbors-zero", lambda: KNN(n_neighbors=0), r"KNN: n_neighbors must be an integer >= 1; got 0\."),
    ("knn-n-neighbors-float", lambda: KNN(n_neighbors=2.0),
     r"KNN: n_neighbors must be an integer >= 1; got 2\.0\."),
    ("knn-n-neighbors-bool", lambda: KNN(n_neighbors=True),
     r"KNN: n_neighbors must be an integer >= 1; got True\."),
    ("icon-tiled-knn-n-neighbors", lambda: ICon(KNN(6), Gaussian(sigma=1.0), tile_size=2)(Z, Z),
     r"KNN: n_neighbors must be smaller than the number of candidates per anchor \(5\); got 6\."),
    ("perplexity-equals-candidates", lambda: PerplexityGaussian(5.0)(feats(6)),
     r"PerplexityGaussian: perplexity must be smaller than the number of candidates per anchor \(5\); got 5\.0\."),
    ("perplexity-above-candidates", lambda: PerplexityGaussian(30.0)(feats(6), feats(10, seed=1)),
     r"PerplexityGaussian: perplexity must be smaller than the number of candidates per anchor \(10\); got 30\.0\."),
    # dtypes and empty batches
    ("icon-integer-z", lambda: LOSS(torch.arange(6), Y),
     r"ICon: z must be a floating-point tensor \(what q learns\); got tensor of shape \(6,\) and dtype torch\.int64"),
    ("gaussian-integer-x", lambda: Gaussian(sigma=1.0)(torch.arange(6).reshape(3, 2)),
     r"Gaussian: x must be a floating-point tensor .*; got tensor of shape \(3, 2\) and dtype torch\.int64"),
    ("icon-empty-z", lambda: LOSS(torch.empty(0, 3, dtype=F64), Y),
     r"ICon: z must be a non-empty batch; got tensor of shape \(0, 3\)"),
    ("gaussian-empty", lambda: Gaussian(sigma=1.0)(torch.empty(0, 3)),
     r"Gaussian: x must be a non-empty batch; got tensor of shape \(0, 3\)"),
    ("same-label-empty", lambda: SameLabel()(torch.empty(0, dtype=torch.long)),
     r"SameLabel: x must be a non-empty batch; got tensor of shape \(0,\)"),
    ("same-label-float-ids", lambda: SameLabel()(torch.tensor([0.0, 1.0])),
     r"SameLabel: x must be an integer tensor of ids; got tensor of shape \(2,\) and dtype torch\.float32"),
    ("same-label-bool-ids", lambda: PositivePairs()(torch.tensor([True, False])),
     r"PositivePairs: x must be an integer tensor of ids; got tensor of shape \(2,\) and dtype torch\.bool"),
    ("same-label-one-id", lambda: SameLabel()(torch.tensor([3])),
     r"SameLabel: x must hold at least 2 ids when the anchors are their own candidates; got tensor of shape \(1,\)"),
    ("same-label-per-anchor-rows", lambda: SameLabel()(Y, torch.zeros(4, 3, dtype=torch.long)),
     r"SameLabel: y must have one candidate set per anchor \(6 rows\); got tensor of shape \(4, 3\)"),
    # unknown names
    ("gaussian-metric", lambda: Gaussian(sigma=1.0, metric="l1"),
     r"Gaussian: metric must be one of \('squared_euclidean', 'cosine', 'dot'\); got 'l1'\."),
    ("knn-metric", lambda: KNN(2, metric="euclidean"),
     r"KNN: metric must be one of \('squared_euclidean', 'cosine', 'dot'\); got 'euclidean'\."),
    ("icon-divergence", lambda: ICon(SameLabel(), Gaussian(sigma=1.0), divergence="js"),
     r"ICon: divergence must be one of \('kl', 'reverse_kl', 'cross_entropy'\); got 'js'\."),
    ("icon-divergence-type", lambda: ICon(SameLabel(), Gaussian(sigma=1.0), divergence=3),
     r"ICon: divergence must be one of \('kl', 'reverse_kl', 'cross_entropy'\) or a callable; got 3\."),
    ("icon-reduction", lambda: ICon(SameLabel(), Gaussian(sigma=1.0), reduction="avg"),
     r"ICon: reduction must be one of \('mean', 'sum', 'none'\); got 'avg'\."),
    ("propagate-mode", lambda: propagate(KNN(2), 2, mode="walk"),
     r"Propagate: mode must be one of \('sum', 'reach'\); got 'walk'\."),
    ("propagate-steps", lambda: propagate(KNN(2), 0), r"Propagate: steps must be an integer >= 1; got 0\."),
    # log-probabilities expected
    ("precomputed-probabilities", lambda: Precomputed(torch.softmax(feats(4, d=4), dim=1)),
     r"Precomputed: log_p must hold log-probabilities whose rows log-sum-exp to 0; got a row off by "
     r"[0-9.e-]+ \(did you pass probabilities\?\)"),
    ("precomputed-1d", lambda: Precomputed(torch.zeros(3)),
     r"Precomputed: log_p must be a 2-D tensor of log-probabilities; got tensor of shape \(3,\)"),
    ("precomputed-integer", lambda: Precomputed(torch.zeros(3, 1, dtype=torch.long)),
     r"Precomputed: log_p must be a non-empty floating-point tensor; "
     r"got tensor of shape \(3, 1\) and dtype torch\.int64"),
    ("precomputed-nan", lambda: Precomputed(with_value(torch.zeros(3, 1, dtype=F64), 0, 0, float("nan"))),
     r"Precomputed: log_p must contain no NaN or \+inf; got tensor of shape \(3, 1\)"),
    ("icon-p-probabilities-tensor", lambda: ICon(torch.softmax(feats(6, d=6), dim=1), Gaussian(sigma=1.0)),
     r"Precomputed: log_p must hold log-probabilities whose rows log-sum-exp to 0"),
    ("cluster-raw-logits", lambda: Cluster()(feats(5, d=4)),
     r"Cluster: x must hold log soft assignments whose rows log-sum-exp to 0 \(apply log_softmax to the "
     r"cluster logits\); got a row off by [0-9.e-]+\."),
    ("cluster-probabilities", lambda: Cluster()(LOG_PHI, LOG_PHI.exp()),
     r"Cluster: y must hold log soft assignments whose rows log-sum-exp to 0"),
    ("cluster-1d", lambda: Cluster()(LOG_PHI[0]),
     r"Cluster: x must be a 2-D floating tensor of log soft assignments \(n, C\); got tensor of shape \(3,\)"),
    ("cluster-cluster-count", lambda: Cluster()(LOG_PHI, torch.log_softmax(feats(4, d=2), 1)),
     r"Cluster: y must have the 3 clusters of x; got tensor of shape \(4, 2\)"),
    ("cluster-nan", lambda: Cluster()(with_value(LOG_PHI, 0, 0, float("nan"))),
     r"Cluster: x must contain no NaN or \+inf; got tensor of shape \(5, 3\)"),
    ("icon-cluster-raw-logits", lambda: ICon(SameLabel(), Cluster())(feats(6, d=4), Y),
     r"^Cluster: z must hold log soft assignments"),
    ("degree-not-positive", lambda: DegreeWeightedCluster(torch.tensor([1.0, 0.0])),
     r"DegreeWeightedCluster: degree must be positive and finite; got tensor of shape \(2,\)"),
    ("degree-integer", lambda: DegreeWeightedCluster(torch.tensor([1, 2])),
     r"DegreeWeightedCluster: degree must be a 1-D floating tensor; got tensor of shape \(2,\) and dtype torch\.int64"),
    ("degree-node-count", lambda: DegreeWeightedCluster(torch.ones(3, dtype=F64))(LOG_PHI),
     r"DegreeWeightedCluster: candidates must be the 3 nodes whose degrees were given; got tensor of shape \(5, 3\)"),
    # ids out of range, missing candidates
    ("data-to-class-too-large", lambda: DataToClass(3)(torch.tensor([0, 3, 1])),
     r"DataToClass: x must hold labels in \[0, 3\); got 'labels from 0 to 3'\."),
    ("data-to-class-negative", lambda: DataToClass(3)(torch.tensor([0, -1, 1])),
     r"DataToClass: x must hold labels in \[0, 3\); got 'labels from -1 to 1'\."),
    ("data-to-class-n-classes", lambda: DataToClass(0), r"DataToClass: n_classes must be an integer >= 1; got 0\."),
    ("cross-modal-no-y", lambda: CrossModal()(torch.arange(3)),
     r"CrossModal: y must hold the item ids of the other modality \(candidates\); got None\."),
    ("icon-cross-modal-no-candidates", lambda: ICon(CrossModal(), Gaussian(temperature=0.1))(Z, torch.arange(6)),
     r"^CrossModal: target_candidates must hold the item ids of the other modality \(candidates\); got None\."),
    ("symmetric-no-candidates",
     lambda: ICon(CrossModal(), Gaussian(temperature=0.1), symmetric=True)(Z, torch.arange(6)),
     r"ICon: candidates must be given when symmetric=True \(the other modality\); got None\."),
    ("adjacency-node-range", lambda: Adjacency(torch.ones(3, 3))(torch.tensor([0, 3])),
     r"Adjacency: x must hold node ids in \[0, 3\); got 'node ids from 0 to 3'\."),
    ("adjacency-candidate-range", lambda: Adjacency(torch.ones(3, 3))(torch.tensor([0, 1]), torch.tensor([-1])),
     r"Adjacency: y must hold node ids in \[0, 3\); got 'node ids from -1 to -1'\."),
    ("adjacency-negative", lambda: Adjacency(torch.tensor([[1.0, -1.0], [0.0, 1.0]])),
     r"Adjacency: weights must be finite and non-negative; got tensor of shape \(2, 2\)"),
    ("adjacency-not-square", lambda: Adjacency(torch.ones(2, 3)),
     r"Adjacency: weights must be a square \(N, N\) tensor; got tensor of shape \(2, 3\)"),
    ("adjacency-integer", lambda: Adjacency(torch.ones(2, 2, dtype=torch.long)),
     r"Adjacency: weights must be a floating-point tensor; got tensor of shape \(2, 2\) and dtype torch\.int64"),
    ("identity-y", lambda: Identity()(torch.arange(3), torch.arange(3)),
     r"Identity: y must be None \(the anchors are the candidates\); got tensor of shape \(3,\)"),
    # transforms and wrappers
    ("symmetrize-y", lambda: symmetrize(KNN(2))(feats(5), feats(4, seed=1)),
     r"Symmetrize: y must be None \(a joint distribution pairs the anchors\); got tensor of shape \(4, 3\)"),
    ("propagate-y", lambda: propagate(KNN(2), 2)(feats(5), feats(4, seed=1)),
     r"Propagate: y must be None \(walks run on the anchors' own graph\); got tensor of shape \(4, 3\)"),
    ("propagate-non-square", lambda: propagate(Precomputed(torch.log_softmax(feats(3, d=4), 1)), 2)(None),
     r"Propagate: base\(x\) must be a square \(n, n\) matrix; got tensor of shape \(3, 4\)"),
    ("joint-non-kernel", lambda: joint(SameLabel()),
     r"Joint: base must be a kernel neighbourhood with logits\(x, y\); got SameLabel\("),
    ("icon-bad-q", lambda: ICon(SameLabel(), 3),
     r"ICon: q must be a Neighborhood, an \(n, m\) log-probability tensor or a callable; got 3\."),
    ("mix-uniform-bad-base", lambda: mix_uniform("gaussian", 0.5),
     r"MixUniform: base must be a Neighborhood, an \(n, m\) log-probability tensor or a callable; got 'gaussian'\."),
    ("from-callable-not-callable", lambda: FromCallable(3), r"FromCallable: fn must be callable; got 3\."),
    ("from-callable-probabilities", lambda: FromCallable(_bad_callable)(feats(3)),
     r"FromCallable: fn\(x, y\) must return log-probabilities whose rows log-sum-exp to 0; got a row off by"),
    ("from-callable-1d", lambda: FromCallable(lambda x, y: x[:, 0])(feats(3)),
     r"FromCallable: fn\(x, y\) must return a 2-D floating tensor of log-probabilities; got tensor of shape \(3,\)"),
    ("precomputed-anchor-count",
     lambda: ICon(Precomputed(torch.log_softmax(feats(4, d=4), 1)), Gaussian(sigma=1.0))(Z, Z),
     r"^Precomputed: target must hold the 4 anchors of log_p; got tensor of shape \(6, 3\)"),
]


@pytest.mark.parametrize("thunk,pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises_iconerror(thunk, pattern):
    with pytest.raises(IConError, match=pattern):
        thunk()


def test_case_ids_are_unique():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))


def test_messages_follow_the_uniform_shape():
    """``<who>: <parameter> must <rule>; got <value>.`` for the checks built by ``fail``."""
    for name, thunk, _ in CASES:
        with pytest.raises(IConError) as info:
            thunk()
        message = str(info.value)
        assert re.match(r"^[A-Za-z]+: .+ must .+; got .+\.?", message), (name, message)


# --------------------------------------------------------------------------------------------
# Rows of p without mass (a SupCon anchor with no positive)
# --------------------------------------------------------------------------------------------

LABELS = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3])  # label 2 occurs once: anchor 5 has no positive


def _np_supcon_rows(z: np.ndarray, y: np.ndarray, sigma: float) -> np.ndarray:
    """KL(p_i || q_i) per anchor with p = SameLabel and q = Gaussian(sigma), computed directly."""
    n = len(y)
    d = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    rows = np.full(n, np.nan)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        positives = [j for j in others if y[j] == y[i]]
        if not positives:
            continue
        logits = {j: -d[i, j] / (2 * sigma ** 2) for j in others}
        top = max(logits.values())
        log_norm = top + np.log(sum(np.exp(v - top) for v in logits.values()))
        p = 1.0 / len(positives)
        rows[i] = sum(p * (np.log(p) - (logits[j] - log_norm)) for j in positives)
    return rows


def test_anchor_without_positive_raises_by_default():
    z = feats(8)
    with pytest.raises(IConError, match=r"ICon: every row of p must carry mass, but anchors \[5\] have no "
                                        r"neighbour under p \(1 of 8\); pass skip_empty_rows=True"):
        ICon(SameLabel(dtype=F64), Gaussian(sigma=1.0))(z, LABELS)


def test_many_empty_rows_are_listed_and_truncated():
    z = feats(14)
    y = torch.cat([torch.arange(12), torch.tensor([0, 1])])  # 10 singletons: anchors 2..11
    with pytest.raises(IConError, match=r"anchors \[2, 3, 4, 5, 6, 7, 8, 9, 10, 11\] have no neighbour "
                                        r"under p \(10 of 14\)"):
        ICon(SameLabel(dtype=F64), Gaussian(sigma=1.0))(z, y)
    y = torch.cat([torch.arange(13), torch.tensor([0])])  # 12 singletons: the list is cut at 10
    with pytest.raises(IConError, match=r"anchors \[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, \.\.\.\] have no "
                                        r"neighbour under p \(12 of 14\)"):
        ICon(SameLabel(dtype=F64), Gaussian(sigma=1.0))(z, y)


def test_skip_empty_rows_drops_the_anchor():
    z = feats(8)
    expected = _np_supcon_rows(z.numpy(), LABELS.numpy(), sigma=1.0)
    assert np.isnan(expected[5]) and np.isfinite(np.delete(expected, 5)).all()

    rows = ICon(SameLabel(dtype=F64), Gaussian(sigma=1.0), reduction="none", skip_empty_rows=True)(z, LABELS)
    assert torch.isnan(rows[5])
    np.testing.assert_allclose(np.delete(rows.numpy(), 5), np.delete(expected, 5), rtol=1e-12)

    zg = z.clone().requires_grad_(True)
    mean = ICon(SameLabel(dtype=F64), Gaussian(sigma=1.0), skip_empty_rows=True)(zg, LABELS)
    assert mean.item() == pytest.approx(np.nanmean(expected), rel=1e-12)
    assert mean.item() != pytest.approx(np.nansum(expected) / 8, rel=1e-6)  # not averaged over 8
    total = ICon(SameLabel(dtype=F64), Gaussian(sigma=1.0), reduction="sum", skip_empty_rows=True)(z, LABELS)
    assert total.item() == pytest.approx(np.nansum(expected), rel=1e-12)
    mean.backward()
    assert torch.isfinite(zg.grad).all()
    # the anchor still acts as a candidate (a negative) for the others
    assert zg.grad[5].abs().sum() > 0


@pytest.mark.parametrize("divergence", ["kl", "cross_entropy", "reverse_kl"])
def test_skip_empty_rows_gives_the_gradient_of_the_kept_anchors(divergence):
    """A dropped row must not reach the gradient, even where its divergence is infinite."""
    p, q = mix_uniform(SameLabel(dtype=F64), 0.2), Gaussian(sigma=1.0)
    z = feats(8).requires_grad_(True)
    loss = ICon(p, q, divergence=divergence, skip_empty_rows=True)(z, LABELS)
    loss.backward()
    assert torch.isfinite(z.grad).all()

    z_ref = feats(8).requires_grad_(True)
    keep = torch.arange(8) != 5
    ref = DIVERGENCES[divergence](p(LABELS)[keep], q(z_ref)[keep]).mean()
    ref.backward()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-12)
    torch.testing.assert_close(z.grad, z_ref.grad, rtol=1e-10, atol=1e-12)


def test_all_rows_empty_raises_even_when_skipping():
    with pytest.raises(IConError, match=r"ICon: no anchor has a neighbour under p, so the loss is undefined; "
                                        r"got 6 anchors, all with empty rows\."):
        ICon(SameLabel(), Gaussian(sigma=1.0), skip_empty_rows=True)(feats(6), torch.arange(6))
