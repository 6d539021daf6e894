"""The corpus section's statistics: the closed-form ridge gives the numbers of the per-permutation refit it replaced.

`_old_*` below is the refit path as it was before the closed form (commit 57967e5, `amplitude_nb/corpus.py`), frozen
here as the reference: every permutation refits `StandardScaler + RidgeCV` on every fold.
"""
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.ensemble import ExtraTreesRegressor
from sklearn.linear_model import RidgeCV
from sklearn.metrics import r2_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from amplitude_nb import corpus
from amplitude_nb.corpus import ClosedFormRidge, chance_alignment, group_folds, predict_scores, predict_within


# ---- the old refit path, frozen -------------------------------------------------------------------------------------
def _old_models(seed=0):
    return dict(ridge=make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 4, 15))),
                trees=make_pipeline(StandardScaler(), ExtraTreesRegressor(n_estimators=20, max_depth=6, min_samples_leaf=20,
                                                                          max_features=0.33, random_state=seed, n_jobs=1)))


def _old_oof(model, X, Y, folds):
    P = np.zeros_like(Y)
    for tr, te in folds:
        P[te] = clone(model).fit(X[tr], Y[tr] if Y.shape[1] > 1 else Y[tr, 0]).predict(X[te]).reshape(len(te), -1)
    return P


def _old_pooled_r2(Y, P):
    Y, P = np.asarray(Y).reshape(len(Y), -1), np.asarray(P).reshape(len(P), -1)
    return float(1 - ((Y - P) ** 2).sum() / ((Y - Y.mean(0)) ** 2).sum())


def _old_permute_within(groups, rng):
    idx = np.arange(len(groups))
    for g in np.unique(groups):
        ix = np.flatnonzero(groups == g)
        idx[ix] = rng.permutation(ix)
    return idx


def _old_p_upper(obs, null):
    return float((1 + np.sum(null >= obs - 1e-12)) / (1 + len(null)))


def _old_predict_scores(X, Y, groups, n_splits, n_perm, seed, models):
    folds = group_folds(groups, n_splits, seed)
    pred = {k: _old_oof(m, X, Y, folds) for k, m in models.items()}
    r2 = {k: _old_pooled_r2(Y, P) for k, P in pred.items()}
    best = max(r2, key=r2.get)
    rng = np.random.default_rng(seed)
    null = np.array([[_old_pooled_r2(Yp, _old_oof(m, X, Yp, folds)) for m in models.values()]
                     for Yp in (Y[_old_permute_within(groups, rng)] for _ in range(n_perm))]).reshape(n_perm, len(models))
    return dict(r2=r2[best], model=best, r2_p=_old_p_upper(r2[best], null.max(1)), r2_by_model=r2, null=null, pred=pred,
                r2_p_by_model={k: _old_p_upper(r2[k], null[:, j]) for j, k in enumerate(models)})


def _old_predict_within(X, Y, groups, n_splits, n_perm, seed):
    model = _old_models(seed)['ridge']
    ix = {g: np.flatnonzero(groups == g) for g in dict.fromkeys(groups)}
    folds = {g: group_folds(np.arange(len(i)), n_splits, seed) for g, i in ix.items()}
    sst = sum(((Y[i] - Y[i].mean(0)) ** 2).sum() for i in ix.values())
    def fit(Yv):
        P = np.zeros_like(Yv)
        for g, i in ix.items(): P[i] = _old_oof(model, X[i], Yv[i], folds[g])
        return P
    r2 = float(1 - ((Y - fit(Y)) ** 2).sum() / sst)
    rng = np.random.default_rng(seed)
    null = np.array([1 - ((Yp - fit(Yp)) ** 2).sum() / sst for Yp in (Y[_old_permute_within(groups, rng)]
                                                                      for _ in range(n_perm))])
    return dict(r2=r2, null=null, r2_p=_old_p_upper(r2, null))


# ---- a small planted problem ---------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def planted():
    "360 rows in 9 groups, 7 badly scaled features (one constant), 3 targets: a weak linear signal in 3 features."
    rng = np.random.default_rng(11)
    groups = np.repeat(np.arange(9), 40)
    X = rng.standard_normal((360, 7)) * np.array([1, 30, 0.01, 1, 5, 1, 1])
    X[:, 5] = 4.0
    Y = (X[:, :3] / X[:, :3].std(0)) @ rng.standard_normal((3, 3)) * 0.4 + rng.standard_normal((360, 3))
    return X, Y, groups


def test_pooled_r2_is_variance_weighted_r2(planted):
    X, Y, groups = planted
    P = Y + np.random.default_rng(0).standard_normal(Y.shape) * Y.std(0) * [0.5, 1, 2]
    assert abs(_old_pooled_r2(Y, P) - r2_score(Y, P, multioutput='variance_weighted')) < 1e-12
    Y1, P1 = Y[:, :1], P[:, :1]
    assert abs(_old_pooled_r2(Y1, P1) - r2_score(Y1, P1)) < 1e-12


@pytest.mark.parametrize('n_targets', [3, 1])
def test_ridge_identical_to_refit(planted, n_targets):
    "Observed R², every permuted R² and the p-values of the ridge equal the old per-permutation refit, to 1e-8."
    X, Y, groups = planted
    Y = Y[:, :n_targets]
    old = _old_predict_scores(X, Y, groups, n_splits=4, n_perm=30, seed=3, models={'ridge': _old_models(3)['ridge']})
    new = predict_scores(X, Y, groups, n_splits=4, n_perm=30, seed=3, models={'ridge': ClosedFormRidge()})
    assert abs(new['r2'] - old['r2']) < 1e-8
    assert np.abs(new['pred']['ridge'] - old['pred']['ridge']).max() < 1e-8
    assert np.abs(new['null'][:, 0] - old['null'][:, 0]).max() < 1e-8
    assert new['r2_p'] == old['r2_p'] and new['r2_p_by_model'] == old['r2_p_by_model']
    assert old['null'].std() > 1e-3                       # the permutations do differ from one another


def test_signal_found_and_p_identical(planted):
    "The planted signal beats all 19 permutations on both paths; an independent target does not, with the same p."
    X, Y, groups = planted
    for Yv, signal in ((Y, True), (np.random.default_rng(5).standard_normal(Y.shape), False)):
        old = _old_predict_scores(X, Yv, groups, 4, 19, 0, {'ridge': _old_models()['ridge']})
        new = predict_scores(X, Yv, groups, n_splits=4, n_perm=19, seed=0, models={'ridge': ClosedFormRidge()})
        assert new['r2_p'] == old['r2_p']
        assert new['r2_p'] == 1 / 20 if signal else new['r2_p'] > 0.1


def test_within_identical_to_refit(planted):
    X, Y, groups = planted
    old = _old_predict_within(X, Y, groups, n_splits=3, n_perm=8, seed=2)
    new = predict_within(X, Y, groups, n_splits=3, n_perm=8, seed=2)
    assert abs(new['r2'] - old['r2']) < 1e-8
    assert np.abs(new['null'][:, 0] - old['null']).max() < 1e-8
    assert new['r2_p'] == old['r2_p']


def test_permute_all_reproduces_old_two_model_test(planted):
    "With every model permuted, the two-model result (trees included, max-statistic p) is the old one."
    X, Y, groups = planted
    old = _old_predict_scores(X, Y, groups, 3, 4, 1, _old_models(1))
    new = predict_scores(X, Y, groups, n_splits=3, n_perm=4, seed=1, permute_all=True)
    assert new['model'] == old['model'] and abs(new['r2'] - old['r2']) < 1e-8
    assert np.abs(new['null'] - old['null']).max() < 1e-8
    assert new['r2_p'] == old['r2_p'] and new['r2_p_by_model'] == old['r2_p_by_model']


def test_trees_permuted_only_when_positive_and_better(planted):
    X, Y, groups = planted
    lin = predict_scores(X, Y, groups, n_splits=3, n_perm=3, seed=0)
    assert lin['model'] == 'ridge' and lin['permuted'] == ['ridge'] and lin['r2_p_by_model']['trees'] is None
    assert np.isnan(lin['null'][:, 1]).all() and lin['r2_by_model']['trees'] is not None
    rng = np.random.default_rng(1)
    Xn = rng.standard_normal((360, 2))
    Yn = np.abs(Xn[:, :1]) + 0.2 * rng.standard_normal((360, 1))   # no linear part
    nl = predict_scores(Xn, Yn, groups, n_splits=3, n_perm=3, seed=0)
    assert nl['model'] == 'trees' and nl['permuted'] == ['ridge', 'trees']
    assert nl['r2_p'] == corpus.p_upper(nl['r2'], nl['null'].max(1))
    noise = predict_scores(X, rng.standard_normal((360, 2)), groups, n_splits=3, n_perm=3, seed=0)
    assert max(noise['r2_by_model'].values()) <= 0                # nothing beats the mean: the ridge's test, trees not refit
    assert noise['model'] == 'ridge' and noise['permuted'] == ['ridge']


def test_chance_alignment_haar():
    "Haar rotations: reproducible from the seed; the null of K=2, one PC, is E|cos θ| = 2/π for uniform θ."
    a, b = chance_alignment(2, 1, 2000, seed=4), chance_alignment(2, 1, 2000, seed=4)
    assert (a['values'] == b['values']).all() and a['n_rotations'] == 2000
    assert abs(a['mean'] - 2 / np.pi) < 4 * a['sd'] / np.sqrt(2000)


def test_no_local_eigh():
    assert not hasattr(corpus, 'sorted_eigh') or corpus.sorted_eigh.__module__ == 'amplitude_nb.stats'
    assert not hasattr(corpus, 'pooled_r2') and not hasattr(corpus, 'haar_bases')
