"""Reference values for Tests/LearnTests/PCATests.swift (numpy eigh of the sample covariance)."""
import numpy as np

X = np.array([[2.5, 2.4, 0.5, 1.0], [0.5, 0.7, 1.5, -1.0], [2.2, 2.9, 0.1, 0.3], [1.9, 2.2, 0.8, 0.0],
              [3.1, 3.0, -0.4, 2.0], [2.3, 2.7, 0.3, 0.5], [2.0, 1.6, 1.1, -0.2], [1.0, 1.1, 1.9, -0.7]], dtype=np.float64)
mean = X.mean(axis=0)
cov = np.cov(X, rowvar=False)
w, v = np.linalg.eigh(cov)
order = np.argsort(w)[::-1]
w, v = w[order], v[:, order]
for j in range(v.shape[1]):
    col = v[:, j]
    if col[np.argmax(np.abs(col))] < 0:
        v[:, j] = -col
k = 2
print("mean", np.round(mean, 6).tolist())
print("variances", np.round(w[:k], 6).tolist())
print("components", np.round(v[:, :k].T, 6).tolist())
print("ratio", round(float(w[:k].sum() / w.sum()), 6))
print("transform(X[0])", np.round(v[:, :k].T @ (X[0] - mean), 6).tolist())
