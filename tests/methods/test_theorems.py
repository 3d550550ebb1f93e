"""Numerical checks of the I-Con paper's clustering and variational statements, and of seed 004.

Each test rebuilds one statement on a problem small enough to solve exactly (all hard labelings
enumerated, exact mutual information, eigendecompositions) in float64, and would fail if the
statement were false. Paper: Alshammari et al., "I-Con: A Unifying Framework for Representation
Learning" (ICLR 2025, arXiv:2504.16929), Appendix D (Prop 2, Thm 12, Cor 4) and Appendix E.
Seed 004: Tan, Zhang, Yang & Yuan, "Contrastive learning is spectral clustering on similarity
graph" (ICLR 2024), with HaoChen, Wei, Gaidon & Ma, "Provable guarantees for self-supervised deep
learning with spectral contrastive loss" (NeurIPS 2021).
"""

import itertools

import numpy as np
import pytest
import torch
from scipy.linalg import subspace_angles
from scipy.special import logsumexp
from sklearn.cluster import KMeans, SpectralClustering
from sklearn.manifold import spectral_embedding

import icontorch
from icontorch import methods
from icontorch.divergences import cross_entropy, kl

pytestmark = pytest.mark.usefixtures("float64_default", "one_thread")


@pytest.fixture
def one_thread():
    """Tiny tensors: one torch thread avoids thread start-up and spin-waiting on a busy machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# ----------------------------------------------------------------------------------------- helpers

def _points(seed=0):
    """Seven 2-D points in three loose groups, away from the origin (the dot product is not centred)."""
    rng = np.random.default_rng(seed)
    centres = np.array([[3.0, 1.0], [5.0, 4.0], [1.0, 4.5]])
    return centres[[0, 0, 0, 1, 1, 2, 2]] + rng.normal(scale=1.0, size=(7, 2))


def _labelings(n, k):
    """Every partition of n items into at most k blocks, once each: the labelings whose labels first
    appear in the order 0, 1, 2, ... (every other labeling renames one of these), as an (m, n) array."""
    every = np.array(list(itertools.product(range(k), repeat=n)))
    seen = np.maximum.accumulate(every, axis=1)
    canonical = (every[:, 0] == 0) & (every[:, 1:] <= seen[:, :-1] + 1).all(1)
    return every[canonical]


def _inertia(X, labels, k):
    """k-Means loss at the best centres: sum_c sum_{i in c} ||x_i - mean_c||^2 (empty clusters add 0)."""
    return sum(((X[labels == c] - X[labels == c].mean(0)) ** 2).sum() for c in range(k) if (labels == c).any())


def _one_hot_log(labels, k):
    log_phi = torch.full((len(labels), k), float("-inf"))
    log_phi[torch.arange(len(labels)), torch.as_tensor(labels)] = 0.0
    return log_phi


def _partition(labels):
    """A labeling up to renaming of its labels: the set of its (frozen) blocks."""
    return frozenset(frozenset(np.flatnonzero(labels == c).tolist()) for c in np.unique(labels))


def _argmin_partitions(values, labelings, rtol=1e-9):
    best = values.min()
    return {_partition(lab) for lab, v in zip(labelings, values) if v <= best + rtol * abs(best)}


def _same_span(a, b, atol_degrees=1e-5):
    """Column spans of a and b agree: every principal angle is (numerically) zero."""
    return float(np.degrees(subspace_angles(a, b)).max()) < atol_degrees


def _lbfgs(loss, *tensors, max_iter=3000):
    leaves = [t.clone().requires_grad_() for t in tensors]
    opt = torch.optim.LBFGS(leaves, max_iter=max_iter, tolerance_grad=1e-14, tolerance_change=1e-18,
                            history_size=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        value = loss(*leaves)
        value.backward()
        return value

    opt.step(closure)
    return [t.detach() for t in leaves], float(loss(*leaves).detach())


# ------------------------------------------------------------------------- Thm 12 (dot-product k-Means)

@pytest.mark.parametrize("k", [2, 3])
def test_thm12_dot_product_kmeans(k):
    """argmin_phi L(phi) = argmin of k-Means, L = -(1/n) sum_ij (x_i . x_j) q(j|i) (Thm 12, Appendix D).

    q is the cluster kernel ``q(j|i) = sum_c phi_ic phi_jc / sum_k phi_kc`` (Def. 2, ``icontorch.Cluster``).
    The proof's closed form: with ``mu_c = sum_i phi_ic x_i / sum_i phi_ic``,
    ``sum_ic phi_ic ||x_i - mu_c||^2 = sum_i ||x_i||^2 + n L(phi)`` for hard and soft phi, so L and
    the k-Means loss have the same minimisers. Checked on every partition of 7 points (all hard
    labelings up to renaming), on Dirichlet soft assignments, and against brute-force and
    scikit-learn k-Means. Also Cor 3 with its sign made right:
    ``sum_ij ||x_i - x_j||^2 q(j|i) = 2 sum_ic phi_ic ||x_i - mu_c||^2``.
    """
    X = _points()
    n = len(X)
    Xt = torch.tensor(X)
    gram = Xt @ Xt.T
    sq = torch.cdist(Xt, Xt) ** 2
    kernel = icontorch.Cluster()
    labelings = _labelings(n, k)
    q = torch.stack([kernel(_one_hot_log(labels, k)).exp() for labels in labelings])   # (partitions, n, n)
    values = (-(gram * q).sum((1, 2)) / n).numpy()
    inertias = np.array([_inertia(X, labels, k) for labels in labelings])
    np.testing.assert_allclose(inertias, (X ** 2).sum() + n * values, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose((sq * q).sum((1, 2)).numpy(), 2 * inertias, rtol=1e-12, atol=1e-12)
    best = _argmin_partitions(values, labelings)
    assert best == _argmin_partitions(inertias, labelings) and len(best) == 1
    km = KMeans(n_clusters=k, n_init=50, random_state=0).fit(X)
    assert {_partition(km.labels_)} == best
    np.testing.assert_allclose(km.inertia_, inertias.min(), rtol=1e-10)

    # Soft assignments: the same identity with phi-weighted centres.
    rng = np.random.default_rng(1)
    for alpha in (0.3, 1.0, 5.0):
        phi = rng.dirichlet(np.full(k, alpha), size=n)
        q = kernel(torch.tensor(np.log(phi))).exp()
        mu = (phi.T @ X) / phi.sum(0)[:, None]
        soft = (phi * ((X[:, None, :] - mu[None]) ** 2).sum(-1)).sum()
        np.testing.assert_allclose(soft, (X ** 2).sum() - float((gram * q).sum()), rtol=1e-12)


# ------------------------------------------------------------------ Prop 2 (the relaxation has no gap)

def _soft_kmeans(phi, X):
    """sum_ic phi_ic ||x_i - mu_c||^2 with mu_c the phi-weighted means; phi (..., n, k), X (n, d)."""
    size = phi.sum(-2)                                      # (..., k); an empty cluster has phi = 0
    mu = (phi.transpose(-1, -2) @ X) / size.clamp_min(1e-300)[..., None]
    return (phi * ((X[:, None, :] - mu[..., None, :, :]) ** 2).sum(-1)).sum((-1, -2))


def _project_rows_to_simplex(v):
    """Euclidean projection of each row of v (..., k) onto the probability simplex (sort-based)."""
    u = v.sort(-1, descending=True).values
    css = u.cumsum(-1) - 1.0
    idx = torch.arange(1, v.shape[-1] + 1, dtype=v.dtype)
    rho = ((u - css / idx) > 0).sum(-1, keepdim=True)
    theta = css.gather(-1, rho - 1) / rho
    return (v - theta).clamp_min(0.0)


def test_prop2_relaxation_is_tight():
    """min over soft phi of sum_ic phi_ic ||x_i - mu_c(phi)||^2 is attained one-hot (Prop 2, Appendix D).

    The relaxed (probabilistic) k-Means loss, at its best centres ``mu_c(phi)`` (the phi-weighted
    means), has no gap to hard k-Means: no soft assignment (20000 Dirichlet draws, segments leaving
    the optimum) beats the best of the 365 partitions of 7 points into at most 3 clusters, and
    projected gradient descent on the product of simplices, from 24 random soft starts, ends on
    one-hot assignments, one of them the hard optimum.
    """
    X = torch.tensor(_points())
    n, k = X.shape[0], 3
    labelings = _labelings(n, k)
    hard = _soft_kmeans(torch.eye(k)[torch.as_tensor(labelings)], X)
    best_hard = float(hard.min())

    rng = np.random.default_rng(2)
    for alpha in (0.05, 0.3, 1.0, 3.0):                     # 4 x 5000 random soft assignments
        phi = torch.tensor(rng.dirichlet(np.full(k, alpha), size=(5000, n)))
        assert float(_soft_kmeans(phi, X).min()) >= best_hard - 1e-12
    # Segments from the hard optimum towards 20 random soft points stay above it.
    star = torch.eye(k)[torch.as_tensor(labelings[int(hard.argmin())])]
    t = torch.linspace(1e-3, 1.0, 50)[:, None, None, None]
    towards = torch.tensor(rng.dirichlet(np.ones(k), size=(20, n)))
    assert float(_soft_kmeans((1 - t) * star + t * towards, X).min()) >= best_hard - 1e-12

    g = torch.Generator().manual_seed(2)
    phi = torch.softmax(torch.randn(24, n, k, generator=g), -1).requires_grad_()
    for _ in range(1500):
        (grad,) = torch.autograd.grad(_soft_kmeans(phi, X).sum(), phi)
        phi = _project_rows_to_simplex(phi.detach() - 0.02 * grad).requires_grad_()
    phi = phi.detach()
    assert bool((phi.max(-1).values == 1.0).all())          # every start ends one-hot, exactly
    final = _soft_kmeans(phi, X)
    assert float(final.min()) >= best_hard - 1e-12
    np.testing.assert_allclose(float(final.min()), best_hard, rtol=1e-12)


# ------------------------------------------------------------------ Appendix E (variational MI bound)

def _mutual_information(joint):
    px, py = joint.sum(0, keepdims=True), joint.sum(1, keepdims=True)   # joint[y, x]
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / (py * px)[nz])).sum())


def _log(a):
    with np.errstate(divide="ignore"):
        return torch.tensor(np.log(a))


def test_appendix_e_mutual_information_bound():
    """I(X;Y) >= log N - H(p, q), H(p, q) = -(1/N) sum_y sum_x p(x|y) log q(x|y) (Appendix E).

    The derivation takes p(y) = 1/N (so p(x, y) = p(x|y)/N) and p(x) = 1/N (so -E log p(x) = log N).
    With both marginals uniform (p(x|y) doubly stochastic) the bound holds for every q with gap
    exactly the I-Con loss, ``I - (log N - H(p, q)) = (1/N) sum_y KL(p(.|y) || q(.|y))``, so it is
    tight iff q = p. With only the anchors uniform (the usual I-Con sampling, rows not doubly
    stochastic) it can fail: then ``I = H(X) - H(X|Y) >= H(X) - H(p, q)`` and H(X) < log N.
    """
    N = 5
    rng = np.random.default_rng(3)
    perms = [np.eye(N)[rng.permutation(N)] for _ in range(3)]
    p = sum(w * P for w, P in zip(rng.dirichlet(np.ones(3)), perms))    # p(x|y), doubly stochastic
    joint = p / N
    np.testing.assert_allclose(joint.sum(0), np.full(N, 1 / N), rtol=1e-14)
    info = _mutual_information(joint)
    qs = [rng.dirichlet(np.full(N, a), size=N) for a in (0.3, 1.0, 10.0)]
    qs += [0.9 * p + 0.1 / N, np.full((N, N), 1 / N), p]
    for q in qs:
        h = float(cross_entropy(_log(p), _log(q)).mean())
        gap = float(kl(_log(p), _log(q)).mean())            # the I-Con loss of p against q
        assert info >= np.log(N) - h - 1e-12
        np.testing.assert_allclose(info - (np.log(N) - h), gap, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(info, np.log(N) - float(cross_entropy(_log(p), _log(p)).mean()),
                               rtol=1e-13)                    # tight at q = p

    # Anchors uniform, rows not doubly stochastic: the bound as printed fails at q = p.
    p = rng.dirichlet(np.full(N, 0.5), size=N)
    joint = p / N
    info = _mutual_information(joint)
    h_x = -float((joint.sum(0) * np.log(joint.sum(0))).sum())
    h_pp = float(cross_entropy(_log(p), _log(p)).mean())
    assert info < np.log(N) - h_pp - 1e-3
    for q in qs[:3] + [p]:                                  # the valid bound, with the same gap
        h = float(cross_entropy(_log(p), _log(q)).mean())
        np.testing.assert_allclose(info - (h_x - h), float(kl(_log(p), _log(q)).mean()), rtol=1e-10, atol=1e-13)


# -------------------------------------------------------- Cor 4 (spectral clustering), every labeling

def _graph(n, seed):
    """A weighted graph with uneven degrees: three dense groups, weak random links between them."""
    rng = np.random.default_rng(seed)
    groups = np.array([0, 0, 0, 1, 1, 1, 2, 2])[:n]
    W = rng.random((n, n)) * 0.3 + (groups[:, None] == groups[None, :]) * rng.random((n, n)) * 2.0
    W = (W + W.T) / 2
    np.fill_diagonal(W, 0.0)
    return W


@pytest.mark.parametrize("n, k", [(8, 2), (8, 3)])
def test_cor4_spectral_clustering_every_labeling(n, k):
    """argmin of spectral clustering's I-Con loss = the k-Means optimum on the spectral map (Cor 4, Appendix D).

    Cor 4 applies Thm 13 (k-Means as I-Con) to the spectral map U of the graph. Over every
    partition of an 8-node graph (all hard labelings up to renaming), ``methods.spectral_clustering``
    satisfies ``n L = inertia(U, labels) / sigma^2 + sum_i log sum_k exp(-||u_i - u_k||^2 / 2 sigma^2)``
    with U scikit-learn's spectral map, and its minimising partition is the brute-force k-Means
    optimum on U and the partition of scikit-learn's ``SpectralClustering``.
    """
    W = _graph(n, seed=4)
    sigma = 0.3
    U = spectral_embedding(W, n_components=k, drop_first=False, random_state=0)
    loss = methods.spectral_clustering(torch.tensor(W), k, sigma=sigma)
    nodes = torch.arange(n)
    log_z = logsumexp(-((U[:, None] - U[None]) ** 2).sum(-1) / (2 * sigma ** 2), axis=1).sum()
    labelings = _labelings(n, k)
    values = np.array([float(loss(_one_hot_log(lab, k), target=nodes)) for lab in labelings])
    inertias = np.array([_inertia(U, lab, k) for lab in labelings])
    np.testing.assert_allclose(n * values, inertias / sigma ** 2 + log_z, rtol=1e-10)
    best = _argmin_partitions(values, labelings)
    assert best == _argmin_partitions(inertias, labelings) and len(best) == 1
    sc = SpectralClustering(n_clusters=k, affinity="precomputed", n_init=50, random_state=0).fit(W)
    assert {_partition(sc.labels_)} == best
    # Not every partition is the trivial one: the optimum is strictly better than the runner-up.
    second = np.sort(np.unique(np.round(values, 12)))[1]
    assert second > values.min() + 1e-6


# --------------------------------------- seed 004: contrastive learning is spectral clustering

def _augmentation_graph(n_classes=3, views=3, seed=5):
    """Joint weights w(x, x') of positive pairs: symmetric, summing to 1, mostly inside a class."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), views)
    same = labels[:, None] == labels[None, :]
    W = rng.random(same.shape) * 0.05 + same * (1.0 + rng.random(same.shape))
    W = (W + W.T) / 2
    np.fill_diagonal(W, 0.0)
    return W / W.sum(), labels


def _top_eigenvectors(A, k):
    values, vectors = np.linalg.eigh(A)
    return values[::-1], vectors[:, ::-1][:, :k]


def test_seed004_spectral_contrastive_loss_is_spectral_clustering():
    """argmin_f L(f) spans D^-1/2 (top-k eigenvectors of D^-1/2 W D^-1/2) (seed 004, spectral-loss form).

    HaoChen, Wei, Gaidon & Ma (2021), the exact result behind seed 004's title. Spectral
    contrastive loss on the augmentation graph W (weights of positive pairs, sum 1, ``w_x = sum_x' W``):
    ``L(f) = -2 sum_xx' W_xx' f(x).f(x') + sum_xx' w_x w_x' (f(x).f(x'))^2 = ||A - F F^T||_F^2 - ||A||_F^2``
    with ``A = D^-1/2 W D^-1/2`` and ``F = D^1/2 f``. Its population minimum over f: (n, k) is
    ``-sum_{i<=k} lambda_i^2`` (Eckart-Young) and span(F) is the top-k eigenvectors of A, the bottom-k
    of the normalised Laplacian I - A: the map spectral clustering hands to k-Means. The minimiser
    is found by L-BFGS from a random start, not from the eigendecomposition.
    """
    W, labels = _augmentation_graph()
    n, k = len(W), 3
    w = W.sum(1)
    A = W / np.sqrt(np.outer(w, w))
    lam, top = _top_eigenvectors(A, k)
    assert lam[k - 1] > max(lam[k], 0.0) + 1e-3              # the theorem's eigengap condition
    Wt, wt = torch.tensor(W), torch.tensor(w)

    def spectral_loss(f):
        gram = f @ f.T
        return -2 * (Wt * gram).sum() + (wt[:, None] * wt[None, :] * gram ** 2).sum()

    (f,), value = _lbfgs(spectral_loss, torch.randn(n, k, generator=torch.Generator().manual_seed(6)))
    np.testing.assert_allclose(value, -(lam[:k] ** 2).sum(), rtol=1e-10)
    F = np.sqrt(w)[:, None] * f.numpy()
    assert _same_span(F, top)
    np.testing.assert_allclose(F @ F.T, (top * lam[:k]) @ top.T, atol=1e-7)
    # So k-Means on f is spectral clustering of the graph (here: the classes).
    km = KMeans(n_clusters=k, n_init=20, random_state=0).fit(f.numpy())
    sc = SpectralClustering(n_clusters=k, affinity="precomputed", random_state=0).fit(W)
    assert _partition(km.labels_) == _partition(sc.labels_) == _partition(labels)


def test_seed004_clip_spectral_loss_is_bipartite_spectral_clustering():
    """argmin_(f, g) L(f, g): spans of the bipartite pair graph's top-k eigenvectors (seed 004, CLIP).

    The CLIP extension of seed 004 in the spectral-loss form (HaoChen et al.'s loss on a bipartite
    graph). Images a and texts b with pair weights W_ab (sum 1), ``w_a = sum_b W_ab``, ``w_b = sum_a W_ab``:
    ``L(f, g) = -2 sum_ab W_ab f(a).g(b) + sum_ab w_a w_b (f(a).g(b))^2 = ||B - F G^T||^2 - ||B||^2``,
    ``B = D_a^-1/2 W D_b^-1/2``, ``F = D_a^1/2 f``, ``G = D_b^1/2 g``. The minimum is ``-sum_{i<=k} s_i^2``
    (singular values of B), and span(F), span(G) are the image and text halves of the top-k
    eigenvectors of the bipartite graph's normalised adjacency [[0, B], [B^T, 0]]: spectral
    clustering of the pair graph.
    """
    rng = np.random.default_rng(7)
    na, nb, k = 6, 5, 2
    ga, gb = np.array([0, 0, 0, 1, 1, 1]), np.array([0, 0, 1, 1, 1])
    W = rng.random((na, nb)) * 0.1 + (ga[:, None] == gb[None, :]) * (1.0 + rng.random((na, nb)))
    W /= W.sum()
    wa, wb = W.sum(1), W.sum(0)
    B = W / np.sqrt(np.outer(wa, wb))
    s = np.linalg.svd(B, compute_uv=False)
    assert s[k - 1] > s[k] + 1e-3
    big = np.block([[np.zeros((na, na)), B], [B.T, np.zeros((nb, nb))]])
    _, top = _top_eigenvectors(big, k)
    Wt, wat, wbt = torch.tensor(W), torch.tensor(wa), torch.tensor(wb)

    def clip_spectral_loss(f, g):
        cross = f @ g.T
        return -2 * (Wt * cross).sum() + (wat[:, None] * wbt[None, :] * cross ** 2).sum()

    gen = torch.Generator().manual_seed(8)
    (f, g), value = _lbfgs(clip_spectral_loss, torch.randn(na, k, generator=gen), torch.randn(nb, k, generator=gen))
    np.testing.assert_allclose(value, -(s[:k] ** 2).sum(), rtol=1e-10)
    assert _same_span(np.sqrt(wa)[:, None] * f.numpy(), top[:na])
    assert _same_span(np.sqrt(wb)[:, None] * g.numpy(), top[na:])


def test_seed004_infonce_is_laplacian_trace_plus_repulsion():
    """sum_i H(pi_i, q_i) = tr(Z^T L Z) / tau + log R(Z) (seed 004: Tan et al. 2024, Thms 1-2).

    With p(j|i) = pi_ij (rows of the similarity graph) and the Gaussian kernel
    ``q(j|i) = exp(-||z_i - z_j||^2 / 2 tau) / sum_{k != i} exp(-||z_i - z_k||^2 / 2 tau)``,
    ``sum_i H(pi_i, q_i) = tr(Z^T L Z) / tau + sum_i log sum_{k != i} exp(-||z_i - z_k||^2 / 2 tau)``,
    L the Laplacian of ``(pi + pi^T) / 2``; for CLIP (anchors a, candidates b) the same with the
    Laplacian of the bipartite graph [[0, pi], [pi^T, 0]] and ``1 / (2 tau)``. This is what "InfoNCE is
    spectral clustering" means there: the Laplacian trace of spectral clustering plus a repulsion
    term in place of its orthogonality constraint. It is NOT the statement that the InfoNCE
    optimum spans the Laplacian's eigenvectors, which is false: on the graph of the previous
    tests, the optimum on the unit sphere is about 10 degrees off that span, although its k-Means
    partition is still the spectral one.
    """
    W, labels = _augmentation_graph()
    n, k, tau = len(W), 3, 0.1
    pi = W / W.sum(1, keepdims=True)                        # row-stochastic, not symmetric
    g = torch.Generator().manual_seed(9)
    Z = torch.randn(n, k, generator=g)
    sym = (pi + pi.T) / 2
    lap = torch.tensor(np.diag(sym.sum(1)) - sym)
    q = icontorch.Gaussian(sigma=tau ** 0.5)                # log-weight -d / (2 sigma^2) = -d / (2 tau)
    d = torch.cdist(Z, Z) ** 2
    repulsion = torch.logsumexp((-d / (2 * tau)).fill_diagonal_(float("-inf")), 1).sum()
    loss = icontorch.ICon(p=icontorch.Precomputed(_log(pi)), q=q, divergence="cross_entropy", reduction="sum")
    torch.testing.assert_close(loss(Z), torch.trace(Z.T @ lap @ Z) / tau + repulsion, rtol=1e-12, atol=0)

    na, nb = 4, 5
    pab = np.random.default_rng(10).dirichlet(np.ones(nb), size=na)
    F, G = torch.randn(na, k, generator=g), torch.randn(nb, k, generator=g)
    big = np.block([[np.zeros((na, na)), pab], [pab.T, np.zeros((nb, nb))]])
    lap_b = torch.tensor(np.diag(big.sum(1)) - big)
    stacked = torch.cat([F, G])
    repulsion = torch.logsumexp(-torch.cdist(F, G) ** 2 / (2 * tau), 1).sum()
    loss = icontorch.ICon(p=icontorch.Precomputed(_log(pab)), q=q, divergence="cross_entropy", reduction="sum")
    torch.testing.assert_close(loss(F, candidates=G), torch.trace(stacked.T @ lap_b @ stacked) / (2 * tau)
                               + repulsion, rtol=1e-12, atol=0)

    # The InfoNCE optimum (unit sphere, temperature tau) is not the spectral span; its partition is.
    pi = W / W.sum(1, keepdims=True)
    w = W.sum(1)
    pit, wt = torch.tensor(pi), torch.tensor(w)
    off = torch.eye(n, dtype=torch.bool)

    def infonce(v):
        z = v / v.norm(dim=1, keepdim=True)
        log_q = torch.log_softmax((z @ z.T / tau).masked_fill(off, float("-inf")), 1).masked_fill(off, 0.0)
        return -(wt[:, None] * pit * log_q).sum()

    (v,), _ = _lbfgs(infonce, torch.randn(n, k, generator=g))
    z = (v / v.norm(dim=1, keepdim=True)).numpy()
    _, top = _top_eigenvectors(W / np.sqrt(np.outer(w, w)), k)
    assert np.degrees(subspace_angles(np.sqrt(w)[:, None] * z, top)).max() > 1.0
    km = KMeans(n_clusters=k, n_init=20, random_state=0).fit(z)
    assert _partition(km.labels_) == _partition(labels)
