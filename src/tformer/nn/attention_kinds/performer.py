"""Performer attention (FAVOR+): softmax attention through positive orthogonal random features, O(T m).

exp(q.k * scale) = E_w[phi(q') phi(k')] for w ~ N(0, I), with x' = x * scale^(1/2) and the positive features
phi(x) = exp(w.x - |x|^2 / 2). With m orthogonal rows w_r (Gaussian lengths), attention becomes
out = phi(Q) (phi(K)^T V) / (phi(Q) phi(K)^T 1): no T x T matrix, O(T m D) time and O(T m) memory.

Causal attention uses prefix sums, computed in chunks of c queries: the state (S = sum phi(k) v^T, z = sum
phi(k)) of the earlier chunks plus a masked (c, c) product inside the chunk. Decoding carries that state,
(m, D) per head, instead of a KV cache (``PerformerState``).

Stabilisers: a query's features are divided by their row maximum (it cancels between numerator and
denominator). Key features are divided by one constant: the maximum over all keys (bidirectional), or
exp(max_r |w_r|^2 / 2 - 60) when causal, which depends only on the features (w.x - |x|^2/2 <= |w|^2/2), so a
key's features never depend on later keys and cached decoding computes exactly what the full pass does.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from tformer.attention_params import PerformerParams
from tformer.nn.attention import repeat_kv
from tformer.nn.attention_kinds.base import AttentionCost, AttentionKind, MaskSpec
from tformer.nn.kv_cache import KVCache

# headroom under fp32's largest exponent (~88) left for sums of up to e^16 tokens x features
_CAUSAL_HEADROOM = 60.0


def orthogonal_gaussian(nb_features: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    """(nb_features, dim) rows: blocks of orthonormal rows (QR of a Gaussian matrix), each row then scaled
    to the length of an independent Gaussian vector, so every row is marginally N(0, I) (FAVOR+).

    QR's Q is uniformly distributed only once its columns take the signs of R's diagonal; without that the
    rows lean towards the Gaussian matrix's columns and the kernel estimate keeps a bias however many
    features there are.
    """
    gaussian = torch.randn(-(-nb_features // dim), dim, dim, generator=generator, device="cpu")
    q, r = torch.linalg.qr(gaussian)  # (blocks, D, D) each
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]
    rows = q.transpose(-1, -2).reshape(-1, dim)[:nb_features]  # the rows of each Q^T, block after block
    lengths = torch.randn(nb_features, dim, generator=generator, device="cpu").norm(dim=1)
    return rows * lengths[:, None]


class PerformerState(KVCache):
    """The decoding cache of a causal Performer layer: S (B, H, m, D) and z (B, H, m), constant in length.

    It plays the KVCache role for the model (setup, reset, beam reordering, size) but stores no keys:
    ``update`` only checks that positions follow on and hands the new k, v to the attention kind.
    """

    single_query_sees_all_keys = True
    rewindable = False  # a running sum cannot drop rejected tokens (speculative decoding)

    def __init__(
        self,
        batch_size: int,
        n_heads: int,
        nb_features: int,
        head_dim: int,
        device: torch.device | str | None = None,
    ) -> None:
        nn.Module.__init__(self)  # not KVCache's buffers: no (T, D) slots
        self.register_buffer("kv", torch.zeros(batch_size, n_heads, nb_features, head_dim, device=device))
        self.register_buffer("z", torch.zeros(batch_size, n_heads, nb_features, device=device))
        self.next_pos = 0

    def rewind(self, end: int, shift: torch.Tensor | None = None) -> None:
        """A running sum cannot drop tokens: speculative decoding needs key/value caches."""
        raise ValueError(
            "speculative decoding is not supported with attention_kind='performer': its decoding state is a "
            "running sum that cannot drop rejected tokens"
        )

    def key_positions(self, input_pos: torch.Tensor) -> torch.Tensor:
        """The keys of a call are its own tokens; the earlier ones live in the state."""
        return input_pos

    def update(
        self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Check that ``input_pos`` continues the state's positions in order; return k, v unchanged."""
        start = int(input_pos[0])
        if start != self.next_pos or not torch.equal(
            input_pos, torch.arange(start, start + input_pos.numel(), device=input_pos.device)
        ):
            raise ValueError(
                f"a Performer state continues at position {self.next_pos}; got positions from {start} "
                "(decode in order, or reset the caches)"
            )
        self.next_pos = start + input_pos.numel()
        return k, v

    def reorder(self, index: torch.Tensor) -> None:
        """Select batch rows of the state (beam search): row i becomes old row index[i]."""
        self.kv.copy_(self.kv.index_select(0, index))
        self.z.copy_(self.z.index_select(0, index))

    def reset(self) -> None:
        """Empty the state for a new sequence (positions start again at 0)."""
        self.kv.zero_()
        self.z.zero_()
        self.next_pos = 0

    def nbytes(self) -> int:
        """Bytes held by the state (S and z): the same at every length."""
        return (self.kv.numel() + self.z.numel()) * self.kv.element_size()


class PerformerAttention(AttentionKind):
    """FAVOR+ attention with ``nb_features`` positive orthogonal random features shared by the heads.

    Args:
        head_dim: D. n_heads: H (for the decoding state). nb_features: m >= 1.
        redraw_interval: > 0 redraws the features every that many training forward passes; 0 keeps them.
        seed: draws the features (the k-th redraw uses seed + k). chunk_size: causal chunk length.
    """

    name = "performer"

    def __init__(
        self,
        head_dim: int,
        n_heads: int = 1,
        *,
        nb_features: int = 256,
        redraw_interval: int = 0,
        seed: int = 0,
        chunk_size: int = 128,
    ) -> None:
        super().__init__()
        for field, value, low in (("nb_features", nb_features, 1), ("redraw_interval", redraw_interval, 0)):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"performer {field} must be an integer >= {low}, got {value!r}")
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"performer chunk_size must be an integer >= 1, got {chunk_size!r}")
        self.head_dim, self.n_heads, self.nb_features = head_dim, n_heads, nb_features
        self.redraw_interval, self.seed, self.chunk_size = redraw_interval, seed, chunk_size
        self.draws, self.calls = 0, 0
        # a persistent buffer: a saved model keeps the features it was trained with
        self.register_buffer("features", self._draw(seed))

    @classmethod
    def from_params(cls, params: PerformerParams, *, head_dim: int, n_heads: int, **sizes: object):
        """The kind for a layer with this head_dim and head count (the decoding state's shape)."""
        return cls(
            head_dim,
            n_heads,
            nb_features=params.nb_features,
            redraw_interval=params.redraw_interval,
            seed=params.seed,
            chunk_size=params.chunk_size,
        )

    def _draw(self, seed: int) -> torch.Tensor:
        return orthogonal_gaussian(self.nb_features, self.head_dim, torch.Generator().manual_seed(seed))

    @torch.no_grad()
    def redraw(self) -> None:
        """Draw new random features (the next seed in the sequence)."""
        self.draws += 1
        self.features.copy_(self._draw(self.seed + self.draws))

    def make_cache(self, batch_size: int, dtype: torch.dtype, device) -> PerformerState:
        """The constant-size decoding state of this layer (kept in fp32 whatever the model's dtype)."""
        return PerformerState(batch_size, self.n_heads, self.nb_features, self.head_dim, device)

    def _logits(self, x: torch.Tensor, scale: float) -> torch.Tensor:
        """log phi(x): w.x' - |x'|^2 / 2 with x' = x * scale^(1/2). (B, H, T, D) -> (B, H, T, m)."""
        x = x * math.sqrt(scale)
        return x @ self.features.float().T - x.square().sum(-1, keepdim=True) / 2

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        *,
        mask: MaskSpec | None = None,
        is_causal: bool = False,
        scale: float,
        dropout_p: float = 0.0,
        cache: PerformerState | None = None,
        **_: object,
    ) -> torch.Tensor:
        """q (B, H, T, D), k and v (B, Hkv, T, D) -> (B, H, T, D). Attention dropout does not apply: no
        probabilities exist. With ``cache`` (causal decoding) the state carries the earlier tokens."""
        spec = self.check(q, mask, is_causal)
        if cache is not None and not is_causal:
            raise ValueError("a Performer decoding state needs causal attention")
        if self.training and self.redraw_interval:
            self.calls += 1
            if self.calls % self.redraw_interval == 0:
                self.redraw()
        dtype, H = q.dtype, q.shape[1]
        q, k, v = q.float(), repeat_kv(k, H // k.shape[1]).float(), repeat_kv(v, H // v.shape[1]).float()
        ok = spec.key_ok(q.shape[0])[:, None, :, None]  # (B, 1, S, 1)
        q_logits = self._logits(q, scale)
        q_feat = torch.exp(q_logits - q_logits.amax(-1, keepdim=True))  # (B, H, T, m)
        k_logits = self._logits(k, scale)
        if is_causal:
            stab = self.features.float().square().sum(-1).max() / 2 - _CAUSAL_HEADROOM
        else:
            stab = k_logits.masked_fill(~ok, float("-inf")).amax(dim=(-1, -2), keepdim=True).clamp_min(-1e30)
        k_feat = torch.exp(k_logits - stab).masked_fill(~ok, 0.0)  # (B, H, S, m), padding keys add nothing
        if not is_causal:
            num = q_feat @ (k_feat.transpose(-1, -2) @ v)  # (B, H, T, m) @ (B, H, m, D)
            den = q_feat @ k_feat.sum(-2)[..., None]  # (B, H, T, 1)
            return (num / den.clamp_min(torch.finfo(den.dtype).tiny)).to(dtype)
        state = (cache.kv, cache.z) if cache is not None else None
        out, (kv, z) = self._causal(q_feat, k_feat, v, state)
        if cache is not None:
            cache.kv.copy_(kv)
            cache.z.copy_(z)
        return out.to(dtype)

    def _causal(self, q_feat, k_feat, v, state):
        """Prefix sums in chunks: out_t = phi(q_t) sum_{s<=t} phi(k_s) v_s^T / phi(q_t) sum_{s<=t} phi(k_s)."""
        B, H, T, m = q_feat.shape
        if state is None:
            state = (q_feat.new_zeros(B, H, m, v.shape[-1]), q_feat.new_zeros(B, H, m))
        kv, z = state
        c = self.chunk_size
        lower = torch.ones(c, c, dtype=torch.bool, device=q_feat.device).tril()
        outs = []
        for s in range(0, T, c):
            qc, kc, vc = q_feat[:, :, s : s + c], k_feat[:, :, s : s + c], v[:, :, s : s + c]
            n = qc.shape[2]
            inner = (qc @ kc.transpose(-1, -2)).masked_fill(~lower[:n, :n], 0.0)  # (B, H, n, n)
            num = qc @ kv + inner @ vc  # (B, H, n, D)
            den = qc @ z[..., None] + inner.sum(-1, keepdim=True)  # (B, H, n, 1)
            outs.append(num / den.clamp_min(torch.finfo(den.dtype).tiny))
            kv = kv + kc.transpose(-1, -2) @ vc
            z = z + kc.sum(-2)
        return torch.cat(outs, dim=2), (kv, z)

    @classmethod
    def cost(cls, params: PerformerParams, seq_len: int, head_dim: int, causal: bool) -> AttentionCost:
        """Matmul FLOPs: features of q and k 2 x 2TmD; phi(K)^T V and phi(Q) (.) 2 x 2TmD; the denominator
        2Tm; causal adds, per chunk of n queries, the masked (n, n) product and its use: 2 n^2 (m + D).
        Memory: the two (T, m) feature matrices, plus a (c, c) chunk when causal."""
        T, m, D, c = seq_len, params.nb_features, head_dim, params.chunk_size
        flops = 8 * T * m * D + 2 * T * m
        elements = 2 * T * m
        if causal:
            chunks = [min(c, T - s) for s in range(0, T, c)]
            flops += sum(2 * n * n * (m + D) for n in chunks)
            elements += min(c, T) ** 2
        return AttentionCost(flops=flops, score_elements=elements)
