"""Fast constrained beam search over item titles — our kernel, tested against ``generate``.

Why not ``generate``: it prefills the prompt once per beam (20x the dominant cost), calls a
Python function per beam per step to find the allowed tokens, and keeps finished users in the
batch. Here:

* each prompt is prefilled **once**, and its keys/values are kept once per user: the beams of a
  user attend to [that user's prompt cache | their own short cache of answer tokens]
  (:class:`SharedPromptBeams`, an attention function registered with ``transformers``). A step
  costs the new tokens' matmuls plus attention; the prompt is never copied or reordered, only
  the few answer tokens of each beam are. The layout this replaced, where the prompt cache is
  copied to every beam and every step reorders and appends to all of it
  (:class:`CopiedPromptBeams`, ``prompt_cache="copied"``), stays as the reference the benchmark
  and the tests compare with;
* the title trie is held as tensors (CSR: ``offsets``/``tokens``/``children``), so the allowed
  tokens of all beams are one gather;
* many users' beams go through one forward; a user whose ``num_beams`` hypotheses are finished
  leaves the batch (its prompt and beam rows are dropped).

The selection rule is the one ``transformers`` uses (so the ranked lists agree up to exact
score ties): per user, the top ``2 * num_beams`` continuations of the running beams by
accumulated log-prob (log-softmax over the full vocabulary, then restricted to the trie);
continuations that end in EOS *and* rank in the first ``num_beams`` become finished
hypotheses scored ``sum_logprob / generated_len ** length_penalty``; the best ``num_beams``
non-EOS continuations keep running; a user is done when ``num_beams`` hypotheses are finished
(``early_stopping=True``). Scores are accumulated in fp32 whatever the model's dtype.

One deliberate difference: when fewer real continuations exist than ``generate`` keeps, it
fills its beams with sentinel-scored copies (about -1e9), and these can take finished slots and
end its search with fewer than ``num_beams`` real hypotheses (padded with duplicates). The kernel
keeps only real beams, so its list is then a superset of ``generate``'s real hypotheses, with
identical scores; otherwise the lists are equal (``tests/test_beam_search.py``).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from transformers import AttentionInterface, DynamicCache

NEG = float("-inf")
ATTENTION = "prunerec_shared_prompt"  # the attention function the beams' decode steps run through


class TensorTrie:
    """The title trie as tensors. Node 0 is the root; ``-1`` marks "after EOS" (a leaf).

    offsets: [nodes + 1]  CSR row pointers
    tokens:  [edges]      token id of each edge
    children:[edges]      node reached by each edge
    """

    def __init__(self, trie, device="cpu"):
        ids = {(): 0}
        for prefix in sorted(trie.next, key=len):
            ids.setdefault(prefix, len(ids))
        offsets, tokens, children = [0], [], []
        self.final_edge: dict[tuple, int] = {}  # answer ids -> index of its EOS edge
        for prefix, node in sorted(ids.items(), key=lambda kv: kv[1]):
            for tok in trie.next.get(prefix, []):
                if tok == trie.eos:
                    self.final_edge[prefix + (tok,)] = len(tokens)
                tokens.append(tok)
                children.append(ids.get(prefix + (tok,), -1))
            offsets.append(len(tokens))
        self.offsets = torch.tensor(offsets, device=device)
        self.tokens = torch.tensor(tokens, device=device)
        self.children = torch.tensor(children, device=device)
        self.degree = self.offsets[1:] - self.offsets[:-1]
        self.depth = trie.depth
        self.eos = trie.eos

    def allowed(self, nodes: torch.Tensor):
        """For beams at ``nodes`` [N]: edge indices [N, D] and a validity mask [N, D]."""
        deg = self.degree[nodes]
        width = int(deg.max())
        ar = torch.arange(width, device=nodes.device)
        valid = ar[None, :] < deg[:, None]
        edges = torch.where(valid, self.offsets[nodes][:, None] + ar[None, :], 0)
        return edges, valid


def prefill(model, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, DynamicCache]:
    """One forward over the left-padded prompts ``ids`` [U, P]: last-token logits [U, V] and the cache."""
    cache = DynamicCache(config=model.config)
    out = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                cache=cache, use_cache=True, logits_to_keep=1)
    return out.logits[:, -1], cache


class CopiedPromptBeams:
    """Reference layout: the prompt's KV cache is copied to each of a user's ``B`` beams.

    Every step reorders the whole cache (prompt included) to the selected beams and appends the
    new token (``DynamicCache.reorder_cache`` + concatenation): rows ``[U*B, Hkv, P + t, d]``.
    """

    def __init__(self, model, ids: torch.Tensor, mask: torch.Tensor, num_beams: int):
        self.model = model
        self.first_logits, self.cache = prefill(model, ids, mask)
        self.cache.batch_repeat_interleave(num_beams)
        self.mask = mask.repeat_interleave(num_beams, 0)
        self.next_pos = self.mask.sum(-1, keepdim=True)  # position id of the next token, [U*B, 1]

    @contextmanager
    def decoding(self):
        yield self

    def step(self, rows: torch.Tensor, users: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Logits [N, V] after feeding ``tokens`` [N] to beams continuing the rows ``rows`` [N]."""
        self.cache.reorder_cache(rows)
        self.mask = torch.cat([self.mask[rows], self.mask.new_ones(len(rows), 1)], 1)
        pos = self.next_pos[rows]
        self.next_pos = pos + 1
        out = self.model(input_ids=tokens[:, None], attention_mask=self.mask, position_ids=pos, cache=self.cache,
                         use_cache=True)
        return out.logits[:, -1]


class SharedPromptBeams:
    """The prompt's keys/values kept once per user; each beam holds only its answer tokens.

    Per layer: prompt ``k, v`` [A, Hkv, P, d] (A users still searching, left-padded, ``bias``
    [A, 1, 1, P] is -inf on the padding) and beam ``k, v`` [A*B, Hkv, t, d] after ``t`` decode
    steps. A beam's query (Hq = g·Hkv heads, grouped as ``repeat_kv`` groups them) attends to

        softmax([q·K_promptᵀ + bias | q·K_beamᵀ] · scaling) · [V_prompt ; V_beam]

    where the prompt part is one matmul per user and KV head with the user's B·g query rows
    stacked: the prompt is read, never copied. Attention is computed in fp32 (the prompt cache is
    stored in fp32 once), also for a bf16 model, whose projections and MLPs run in bf16. Exact:
    the same softmax over the same keys as the copied layout, up to float summation order.
    """

    def __init__(self, model, ids: torch.Tensor, mask: torch.Tensor, num_beams: int):
        self.model, self.B, self.t = model, num_beams, 0
        self.first_logits, cache = prefill(model, ids, mask)
        self.prompt_k = [layer.keys.float() for layer in cache.layers]  # attention runs in fp32
        self.prompt_v = [layer.values.float() for layer in cache.layers]
        self.bias = torch.zeros(mask.shape, device=ids.device).masked_fill(mask == 0, NEG)[:, None, None, :]
        self.next_pos = mask.sum(-1)  # position id of each user's first answer token, [A]
        self.beam_k: list[torch.Tensor | None] = [None] * len(self.prompt_k)
        self.beam_v: list[torch.Tensor | None] = [None] * len(self.prompt_k)

    @contextmanager
    def decoding(self):
        """Run the model's attention through :func:`shared_prompt_attention` while decoding."""
        before = self.model.config._attn_implementation
        self.model.set_attn_implementation(ATTENTION)
        try:
            yield self
        finally:
            self.model.set_attn_implementation(before)

    def step(self, rows: torch.Tensor, users: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Logits [N, V] after feeding ``tokens`` [N] to beams continuing the rows ``rows`` [N];
        ``users`` [A'] are the users (indices among the current ones) that still search."""
        if len(users) < self.bias.shape[0]:  # a user finished: drop its prompt rows
            self.prompt_k = [k[users] for k in self.prompt_k]
            self.prompt_v = [v[users] for v in self.prompt_v]
            self.bias, self.next_pos = self.bias[users], self.next_pos[users]
        if self.t:
            self.beam_k = [k[rows] for k in self.beam_k]
            self.beam_v = [v[rows] for v in self.beam_v]
        pos = (self.next_pos + self.t).repeat_interleave(self.B)[:, None]
        out = self.model(input_ids=tokens[:, None], position_ids=pos, use_cache=False, prunerec_beams=self)
        self.t += 1
        return out.logits[:, -1]

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scaling: float) -> torch.Tensor:
        """Attention output [N, 1, Hq, d] of the new tokens' ``q`` [N, Hq, 1, d]; ``k, v``
        [N, Hkv, 1, d] are appended to the beams' own cache first. Computed in fp32 whatever the
        model's dtype (a bf16 score matmul would round the logits of the softmax)."""
        dtype, q, k, v = q.dtype, q.float(), k.float(), v.float()
        if self.t:
            k = torch.cat([self.beam_k[layer], k], 2)
            v = torch.cat([self.beam_v[layer], v], 2)
        self.beam_k[layer], self.beam_v[layer] = k, v
        pk, pv = self.prompt_k[layer], self.prompt_v[layer]
        A, Hkv, P, d = pk.shape
        N, Hq, T = q.shape[0], q.shape[1], k.shape[2]
        B, g = N // A, Hq // Hkv
        # one layout for both parts: [A, Hkv, B·g, ·], a user's beams stacked per KV head
        q = q.reshape(A, B, Hkv, g, d).transpose(1, 2).reshape(A, Hkv, B * g, d)
        kb = k.reshape(A, B, Hkv, T, d).transpose(1, 2)  # [A, Hkv, B, t+1, d]
        vb = v.reshape(A, B, Hkv, T, d).transpose(1, 2)
        s_prompt = (q @ pk.transpose(-1, -2)) * scaling + self.bias  # [A, Hkv, B·g, P]
        s_beam = (q.reshape(A, Hkv, B, g, d) @ kb.transpose(-1, -2)) * scaling  # [A, Hkv, B, g, t+1]
        w = torch.softmax(torch.cat([s_prompt, s_beam.reshape(A, Hkv, B * g, T)], -1), -1)
        out = w[..., :P] @ pv + (w[..., P:].reshape(A, Hkv, B, g, T) @ vb).reshape(A, Hkv, B * g, d)
        return out.reshape(A, Hkv, B, g, d).permute(0, 2, 1, 3, 4).reshape(N, 1, Hq, d).to(dtype)


def shared_prompt_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                            prunerec_beams: SharedPromptBeams | None = None, **kwargs):
    """``transformers`` attention function of the decode steps (see :class:`SharedPromptBeams`)."""
    if prunerec_beams is None:
        raise RuntimeError(f"the {ATTENTION!r} attention only runs inside constrained_beam_search")
    return prunerec_beams.attend(module.layer_idx, query, key, value, scaling or module.scaling), None


AttentionInterface.register(ATTENTION, shared_prompt_attention)
LAYOUTS = {"shared": SharedPromptBeams, "copied": CopiedPromptBeams}


@torch.no_grad()
def constrained_beam_search(model, prompts: list[list[int]], trie, num_beams: int = 20, length_penalty: float = 0.0,
                            pad_token_id: int = 0, tensor_trie: TensorTrie | None = None,
                            banned: list[list[list[int]]] | None = None, prompt_cache: str = "shared"
                            ) -> list[list[tuple[tuple[int, ...], float]]]:
    """Ranked (token ids of the answer, score) hypotheses for each prompt; [U][num_beams].

    ``prompts`` are token-id lists of different lengths (left-padded here); ``trie`` a
    ``TitleTrie`` (or pass its ``tensor_trie`` to reuse the tensors across calls).
    ``banned[u]`` lists answers (token ids with EOS) user ``u`` may not receive, e.g. items
    already in the history: their EOS edge is masked for that user only.
    ``prompt_cache``: "shared" (the prompt's keys/values once per user) or "copied" (the
    reference layout, copied to every beam); both give the same lists.
    """
    if prompt_cache not in LAYOUTS:
        raise ValueError(f"prompt_cache must be one of {', '.join(LAYOUTS)}, not {prompt_cache!r}")
    device = next(model.parameters()).device
    tt = tensor_trie or TensorTrie(trie, device)
    U, B, K = len(prompts), num_beams, 2 * num_beams
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_token_id] * (width - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    beams = LAYOUTS[prompt_cache](model, ids, mask, B)
    logprobs = torch.log_softmax(beams.first_logits, -1, dtype=torch.float32).repeat_interleave(B, 0)  # [U*B, V]

    ban = torch.zeros(U, len(tt.tokens), dtype=torch.bool, device=device)  # [U, edges]
    for u, answers in enumerate(banned or []):
        for ids in answers:
            if tuple(ids) in tt.final_edge:
                ban[u, tt.final_edge[tuple(ids)]] = True

    active = torch.arange(U, device=device)  # users still in the batch
    run_score = torch.full((U, B), NEG, device=device)
    run_score[:, 0] = 0.0
    run_node = torch.zeros(U, B, dtype=torch.long, device=device)
    run_seq = torch.zeros(U, B, 0, dtype=torch.long, device=device)
    fin_score = torch.full((U, B), NEG, device=device)  # each user's finished hypotheses, best first
    fin_seq = torch.full((U, B, tt.depth), -1, dtype=torch.long, device=device)  # their answer ids, -1 after the end
    n_fin = torch.zeros(U, dtype=torch.long, device=device)

    with beams.decoding():
        for step in range(tt.depth):
            A = len(active)
            nodes = run_node.reshape(-1)
            edges, valid = tt.allowed(nodes)  # [A*B, D]
            valid &= ~ban[active.repeat_interleave(B)].gather(1, edges)
            tok = tt.tokens[edges]
            cand = torch.where(valid, logprobs.gather(1, tok) + run_score.reshape(-1, 1), NEG)
            D = cand.shape[1]
            top_score, top_idx = cand.reshape(A, B * D).topk(min(K, B * D), dim=1)  # [A, K]
            src_beam = top_idx // D
            flat_edge = edges.reshape(A, B * D).gather(1, top_idx)
            top_tok = tt.tokens[flat_edge]
            real = top_score > NEG
            hits = (top_tok == tt.eos) | (step + 1 >= tt.depth)
            # finished hypotheses: EOS among the first B candidates
            rank_ok = torch.arange(top_score.shape[1], device=device)[None, :] < B
            done_now = hits & rank_ok & real & (n_fin[active] < B)[:, None]
            gen_len = step + 1
            new_fin = torch.where(done_now, top_score / (gen_len ** length_penalty), NEG)
            seq_cand = torch.cat([run_seq.gather(1, src_beam[..., None].expand(-1, -1, run_seq.shape[2])),
                                  top_tok[..., None]], dim=2)  # [A, K, step+1]
            # the B best of each user's finished hypotheses and this step's, all users in one stable sort (no
            # per-user host loop: on a GPU that loop, not the model, set the pace)
            merged = torch.cat([fin_score[active], new_fin], 1)  # [A, B + K]
            keep = merged.sort(dim=1, descending=True, stable=True).indices[:, :B]  # [A, B]
            seqs = torch.cat([fin_seq[active], F.pad(seq_cand, (0, tt.depth - step - 1), value=-1)], 1)
            kept = merged.gather(1, keep)
            fin_score[active] = kept
            fin_seq[active] = seqs.gather(1, keep[..., None].expand(-1, -1, tt.depth))
            n_fin[active] = (kept > NEG).sum(1)
            # running beams: best B non-EOS continuations
            keep_score = torch.where(hits | ~real, NEG, top_score)
            next_score, pick = keep_score.topk(B, dim=1)  # [A, B]
            still = (n_fin[active] < B) & (next_score[:, 0] > NEG)
            if not bool(still.any()) or step + 1 >= tt.depth:
                break
            sel_beam = src_beam.gather(1, pick)  # [A, B]
            sel_edge = flat_edge.gather(1, pick)
            run_score, run_node = next_score[still], tt.children[sel_edge][still].clamp(min=0)
            run_seq = seq_cand.gather(1, pick[..., None].expand(-1, -1, seq_cand.shape[2]))[still]
            sel_tok = tt.tokens[sel_edge][still].reshape(-1)
            rows = ((torch.arange(A, device=device)[:, None] * B + sel_beam)[still]).reshape(-1)
            active = active[still]
            logits = beams.step(rows, still.nonzero().flatten(), sel_tok)
            logprobs = torch.log_softmax(logits, -1, dtype=torch.float32)
    order = fin_score.argsort(dim=1, descending=True, stable=True).tolist()
    scores, answers = fin_score.tolist(), fin_seq.tolist()  # one copy to the host per call
    # Unfilled slots (the search ran out of real continuations, e.g. under a ban) are dropped.
    return [[(tuple(t for t in answers[u][k] if t >= 0), scores[u][k]) for k in order[u] if scores[u][k] > NEG]
            for u in range(U)]
