"""The Table 1 baselines, adapted to GSISR as paper Sec. 5.1.1 describes: SASRec, BERT4Rec and
ReaRec predict the next atomic intent id (a tool; none of them emits parameter slots), P5 and TIGER
decode intent ids autoregressively (P5 as text-to-text, TIGER over residual-quantised semantic
ids). All see the same context, encoded as each model needs it (the row's columns as tokens, or as
an ablation the facts the simulated world derives from them), and are scored at tool level.

Written on ``torch.nn.Transformer*`` layers: these are recommender architectures that no
maintained library in our stack (transformers, peft, trl) ships. Sizes follow the GPlan students
of the same scale (hidden size, layers, heads from the scale's ``picd.model.arch``).

Deliberate simplifications, kept small and named: next-intent models train on every (context,
plan prefix) -> next intent example rather than on one shifted sequence; ReaRec uses its
progressive variant with ``reasoning_steps`` latent steps and a loss on the last one; TIGER's
semantic ids come from residual k-means (RQ-KMeans) over intent descriptors instead of an RQ-VAE
(with ten intents a learned autoencoder has nothing to learn that k-means does not).
"""
from __future__ import annotations

import os
import random
import re
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..core.data import GsisrRow
from ..core.intents import MAX_PLAN_LEN, MUTUAL_EXCLUSION, TOOLS, Plan
from ..core.planner import ToolPlanner
from ..training.modeling import default_device
from .baseline_inputs import context_tokens, context_words, tool_sequence
from .config import BaselineConfig

PAD, UNK, SEP, EOS, MASK, BOS = "<pad>", "<unk>", "<sep>", "<eos>", "<mask>", "<bos>"
SPECIALS = (PAD, UNK, SEP, EOS, MASK, BOS)
TOOL_NAMES: tuple[str, ...] = tuple(TOOLS)
class Vocab:
    """Token <-> id, built from training sequences; unseen tokens map to <unk>."""

    def __init__(self, sequences: Sequence[Sequence[str]], extra: Sequence[str] = ()):
        counts = Counter(t for seq in sequences for t in seq)
        self.itos = list(dict.fromkeys([*SPECIALS, *extra, *sorted(counts)]))
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        return [self.stoi.get(t, self.stoi[UNK]) for t in tokens]


def _causal(n: int, device: torch.device) -> torch.Tensor:
    """Boolean mask hiding later positions (True = not attended), the type the padding masks use."""
    return torch.ones(n, n, dtype=torch.bool, device=device).triu(1)


def _pad(seqs: Sequence[Sequence[int]], pad: int = 0) -> torch.Tensor:
    width = max(len(s) for s in seqs)
    return torch.tensor([list(s) + [pad] * (width - len(s)) for s in seqs], dtype=torch.long)


class Encoder(nn.Module):
    """Token + position embeddings and a pre-norm Transformer encoder (causal or bidirectional)."""

    def __init__(self, vocab_size: int, arch: dict[str, Any], max_len: int = 64):
        super().__init__()
        d = arch["hidden_size"]
        self.tok = nn.Embedding(vocab_size, d, padding_idx=0)
        self.pos = nn.Embedding(max_len, d)
        layer = nn.TransformerEncoderLayer(d, arch["num_attention_heads"], arch["intermediate_size"], dropout=0.1,
                                           batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, arch["num_hidden_layers"], enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor, pad: torch.Tensor, causal: bool) -> torch.Tensor:
        """``x``: (B, T, d) input embeddings (without positions); ``pad``: (B, T) True at padding."""
        x = x + self.pos(torch.arange(x.shape[1], device=x.device))
        return self.norm(self.layers(x, mask=_causal(x.shape[1], x.device) if causal else None,
                                     src_key_padding_mask=pad, is_causal=causal))


class NextIntentModel(nn.Module, ToolPlanner):
    """SASRec (causal), BERT4Rec (bidirectional, cloze) and ReaRec (causal + latent reasoning
    steps) over [context tokens, <sep>, intents so far (, <mask>)]; the next intent is scored by
    the dot product with the item embeddings (tied, as in SASRec and BERT4Rec)."""

    def __init__(self, kind: str, vocab: Vocab, arch: dict[str, Any], reasoning_steps: int = 2,
                 features: str = "raw"):
        super().__init__()
        if kind not in ("sasrec", "bert4rec", "rearec"):
            raise ValueError(f"unknown next-intent model {kind!r}")
        self.kind, self.vocab, self.features = kind, vocab, features
        self.causal = kind != "bert4rec"
        self.steps = reasoning_steps if kind == "rearec" else 0
        self.encoder = Encoder(len(vocab), arch)
        self.reason_pos = nn.Embedding(max(self.steps, 1), arch["hidden_size"])
        self.register_buffer("items", torch.tensor(vocab.encode([*TOOL_NAMES, EOS])), persistent=False)

    def inputs(self, context: list[str], prefix: Sequence[str]) -> list[int]:
        tail = [MASK] if self.kind == "bert4rec" else []
        return self.vocab.encode([*context, SEP, *prefix, *tail])

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Logits over (tools..., <eos>) for the next intent of each (left-aligned) sequence."""
        pad = ids == 0                                   # (B, T)
        x = self.encoder.tok(ids)                        # (B, T, d)
        last = (~pad).sum(1) - 1                         # (B,) the last real position
        h = self.encoder(x, pad, self.causal)            # (B, T, d)
        rows = torch.arange(len(ids), device=ids.device)
        state = h[rows, last]                            # (B, d)
        for k in range(self.steps):  # ReaRec: feed the last hidden state back as the next input
            x = torch.cat([x, torch.zeros_like(x[:, :1])], 1)          # (B, T + k + 1, d)
            pad = torch.cat([pad, torch.ones_like(pad[:, :1])], 1)
            last = last + 1
            x[rows, last] = state + self.reason_pos.weight[k]
            pad[rows, last] = False
            state = self.encoder(x, pad, True)[rows, last]             # (B, d)
        return state @ self.encoder.tok.weight[self.items].T            # (B, tools + 1): tied item embeddings

    def examples(self, rows: Sequence[GsisrRow], rng: random.Random, mask_p: float = 0.2
                 ) -> list[tuple[list[int], int]]:
        """(input ids, target item index) for every plan prefix; BERT4Rec also masks earlier
        intents at random (its cloze objective)."""
        out = []
        for row in rows:
            ctx, tools = context_tokens(row, self.features), tool_sequence(row.plan)[:MAX_PLAN_LEN]
            targets = [*tools, EOS]
            for k, target in enumerate(targets):
                prefix = list(tools[:k])
                if self.kind == "bert4rec":
                    prefix = [MASK if rng.random() < mask_p else t for t in prefix]
                out.append((self.inputs(ctx, prefix), [*TOOL_NAMES, EOS].index(target)))
        return out

    @torch.no_grad()
    def tools(self, row: GsisrRow) -> list[str]:
        """Greedy next-intent decoding until <eos> (or ``MAX_PLAN_LEN`` intents)."""
        ctx, tools = context_tokens(row, self.features), []
        for _ in range(MAX_PLAN_LEN):
            best = int(self(torch.tensor([self.inputs(ctx, tools)], device=self.items.device)).argmax(-1))
            if best == len(TOOL_NAMES):
                break
            tools.append(TOOL_NAMES[best])
        return tools


def rq_kmeans(x: np.ndarray, codebooks: Sequence[int], seed: int = 0, iters: int = 50) -> np.ndarray:
    """Residual k-means (RQ-KMeans): level l clusters the residual left by levels < l. Returns the
    (n, L) code matrix. Plain numpy: a few lines, and no clustering library in the stack."""
    rng = np.random.default_rng(seed)
    residual, codes = x.astype(float).copy(), []
    for k in codebooks:
        centres = residual[rng.choice(len(residual), size=k, replace=False)]
        for _ in range(iters):
            assign = ((residual[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
            centres = np.stack([residual[assign == j].mean(0) if (assign == j).any() else centres[j] for j in range(k)])
        codes.append(assign)
        residual = residual - centres[assign]
    return np.stack(codes, 1)


def intent_descriptors(train_plans: Sequence[Plan]) -> np.ndarray:
    """A content vector per tool (TIGER encodes item content): its parameters, whether it yields a
    place, its exclusive group, and its position and co-occurrence statistics in training plans."""
    n = len(TOOL_NAMES)
    position, first, cooc = np.zeros(n), np.zeros(n), np.zeros((n, n))
    count = np.full(n, 1e-9)
    for plan in train_plans:
        seq = [TOOL_NAMES.index(t) for t in tool_sequence(plan)]
        for i, t in enumerate(seq):
            count[t] += 1
            position[t] += i / max(len(seq) - 1, 1)
            first[t] += i == 0
            for u in set(seq) - {t}:
                cooc[t, u] += 1
    params = sorted({p for t in TOOLS.values() for p in t.params})
    static = np.array([[p in TOOLS[t].params for p in params] + [TOOLS[t].produces_place, t in MUTUAL_EXCLUSION]
                       for t in TOOL_NAMES], dtype=float)
    feats = np.column_stack([static, position / count, first / count, cooc / count[:, None]])
    return (feats - feats.mean(0)) / (feats.std(0) + 1e-9)


def semantic_ids(train_plans: Sequence[Plan], codebooks: Sequence[int] = (4, 3), seed: int = 0) -> dict[str, tuple[str, ...]]:
    """TIGER's semantic id of each tool: RQ-KMeans codes plus a last code that tells apart tools
    sharing a prefix (as TIGER appends one on collisions)."""
    codes = rq_kmeans(intent_descriptors(train_plans), codebooks, seed)
    seen: Counter = Counter()
    out = {}
    for tool, code in zip(TOOL_NAMES, map(tuple, codes)):
        out[tool] = (*(f"c{level}_{c}" for level, c in enumerate(code)), f"d_{seen[code]}")
        seen[code] += 1
    return out


class Seq2SeqModel(nn.Module):
    """An encoder-decoder Transformer for P5 (words in, item-id text out) and TIGER (context
    tokens in, semantic-id codes out), decoded greedily under an optional allowed-token rule."""

    def __init__(self, vocab: Vocab, arch: dict[str, Any], max_len: int = 96):
        super().__init__()
        d = arch["hidden_size"]
        self.vocab = vocab
        self.tok = nn.Embedding(len(vocab), d, padding_idx=0)
        self.pos = nn.Embedding(max_len, d)
        with warnings.catch_warnings():  # nn.Transformer's note that pre-norm layers skip nested tensors
            warnings.simplefilter("ignore", UserWarning)
            self.net = nn.Transformer(d, arch["num_attention_heads"], arch["num_hidden_layers"], arch["num_hidden_layers"],
                                      arch["intermediate_size"], dropout=0.1, batch_first=True, norm_first=True)

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.tok(ids) + self.pos(torch.arange(ids.shape[1], device=ids.device))

    def encode(self, src: torch.Tensor) -> torch.Tensor:
        return self.net.encoder(self._embed(src), src_key_padding_mask=src == 0)

    def logits(self, memory: torch.Tensor, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Next-token logits at every target position, given the encoded source ``memory``."""
        h = self.net.decoder(self._embed(tgt_in), memory, tgt_mask=_causal(tgt_in.shape[1], src.device), tgt_is_causal=True,
                             tgt_key_padding_mask=tgt_in == 0, memory_key_padding_mask=src == 0)
        return h @ self.tok.weight.T

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        return self.logits(self.encode(src), src, tgt_in)

    @torch.no_grad()
    def decode(self, src: list[int], max_len: int, allowed: Callable[[list[str]], list[str]] | None = None) -> list[str]:
        """Greedy decoding; the source is encoded once, not once per generated token."""
        device = self.tok.weight.device
        source = torch.tensor([src], device=device)
        memory, out = self.encode(source), [self.vocab.stoi[BOS]]
        for _ in range(max_len):
            logits = self.logits(memory, source, torch.tensor([out], device=device))[0, -1]
            if allowed is not None:
                keep = torch.tensor(self.vocab.encode(allowed([self.vocab.itos[i] for i in out[1:]])), device=device)
                logits = torch.full_like(logits, -torch.inf).index_copy(0, keep, logits[keep])
            nxt = int(logits.argmax())
            if self.vocab.itos[nxt] == EOS:
                break
            out.append(nxt)
        return [self.vocab.itos[i] for i in out[1:]]


def p5_target(tools: Sequence[str]) -> list[str]:
    """Item ids as text pieces, the way P5's sub-word tokeniser splits ``tool_10`` (tool, _, 1, 0)."""
    return [piece for t in tools for piece in ("tool", "_", *t.split("_")[1], ";")]


def p5_parse(words: Sequence[str]) -> list[str]:
    """Tool ids read back from P5's generated text (ill-formed ids are dropped, as text would be)."""
    ids = (f"tool_{d}" for d in re.findall(r"tool_(\d+);", "".join(words)))
    return [t for t in ids if t in TOOLS]


@dataclass
class GenerativeBaseline(ToolPlanner):
    """P5 or TIGER: a ``Seq2SeqModel`` with its input and output encodings."""

    kind: str
    model: Seq2SeqModel
    codes: dict[str, tuple[str, ...]] | None = None
    features: str = "raw"

    def source(self, row: GsisrRow) -> list[int]:
        encode = context_words if self.kind == "p5" else context_tokens
        return self.model.vocab.encode(encode(row, self.features))

    def target(self, tools: Sequence[str]) -> list[str]:
        if self.kind == "p5":
            return p5_target(tools)
        return [c for t in tools for c in self.codes[t]]

    def _allowed(self, out: list[str]) -> list[str]:
        """TIGER decodes only valid semantic ids (prefix trie over the codes), then <eos>."""
        depth = len(out) % 3
        nexts = {c[depth] for c in self.codes.values() if c[:depth] == tuple(out[len(out) - depth:])}
        return sorted(nexts) + ([EOS] if depth == 0 and out else [])

    @torch.no_grad()
    def tools(self, row: GsisrRow) -> list[str]:
        """P5: the tool list parsed from generated words; TIGER: trie-constrained semantic ids mapped back."""
        if self.kind == "p5":
            return p5_parse(self.model.decode(self.source(row), 4 * MAX_PLAN_LEN + 8))[:MAX_PLAN_LEN]
        by_code = {c: t for t, c in self.codes.items()}
        out = self.model.decode(self.source(row), 3 * MAX_PLAN_LEN, self._allowed)
        return [by_code[tuple(out[i:i + 3])] for i in range(0, len(out) - len(out) % 3, 3)]

    def examples(self, rows: Sequence[GsisrRow]) -> list[tuple[list[int], list[int]]]:
        enc = self.model.vocab.encode
        return [(self.source(r), enc([BOS, *self.target(tool_sequence(r.plan)[:MAX_PLAN_LEN]), EOS])) for r in rows]


def _fit(model: nn.Module, batches: Callable[[int], list], loss_of: Callable[[Any], torch.Tensor],
         epochs: int, lr: float, desc: str) -> list[float]:
    """AdamW over ``epochs``; ``batches(epoch)`` yields the epoch's batches. Returns mean loss per epoch."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    history = []
    for epoch in tqdm(range(epochs), desc=desc):
        model.train()
        losses = []
        for batch in batches(epoch):
            loss = loss_of(batch)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(loss.item())
        history.append(float(np.mean(losses)))
    model.eval()
    return history


def _batches(items: list, batch_size: int, rng: random.Random) -> list[list]:
    items = list(items)
    rng.shuffle(items)
    return [items[i:i + batch_size] for i in range(0, len(items), batch_size)]


BASELINES = ("SASRec", "BERT4Rec", "ReaRec", "P5", "TIGER")


def train_baseline(name: str, rows: Sequence[GsisrRow], arch: dict[str, Any], train: BaselineConfig, seed: int = 0,
                   features: str = "raw"):
    """Train one Table 1 baseline on labelled rows, seeing the context as ``features`` (see
    ``FEATURES``); returns (the model, a ``core.planner.ToolPlanner``, and its mean loss per epoch)."""
    torch.manual_seed(seed)
    rng, device = random.Random(seed), default_device()
    ce = nn.CrossEntropyLoss(ignore_index=-100)
    if name in ("SASRec", "BERT4Rec", "ReaRec"):
        vocab = Vocab([context_tokens(r, features) for r in rows], extra=TOOL_NAMES)
        model = NextIntentModel(name.lower(), vocab, arch, train.reasoning_steps, features)
        fixed = None if name == "BERT4Rec" else model.examples(rows, rng)  # only cloze masks change per epoch
        data = lambda epoch: _batches(fixed or model.examples(rows, random.Random(seed + epoch)), train.batch_size, rng)
        loss_of = lambda b: ce(model(_pad([x for x, _ in b]).to(device)), torch.tensor([y for _, y in b], device=device))
    elif name in ("P5", "TIGER"):
        codes = semantic_ids([r.plan for r in rows], seed=seed) if name == "TIGER" else None
        targets = (p5_target(TOOL_NAMES) if name == "P5" else [c for cs in codes.values() for c in cs])
        inputs = [(context_words if name == "P5" else context_tokens)(r, features) for r in rows]
        model = GenerativeBaseline(name.lower(), Seq2SeqModel(Vocab(inputs, extra=targets), arch), codes, features)
        examples = model.examples(rows)

        def loss_of(b):
            tgt = _pad([y for _, y in b]).to(device)
            logits = model.model(_pad([x for x, _ in b]).to(device), tgt[:, :-1])
            gold = tgt[:, 1:].masked_fill(tgt[:, 1:] == 0, -100)
            return ce(logits.reshape(-1, logits.shape[-1]), gold.reshape(-1))
        data = lambda epoch: _batches(examples, train.batch_size, rng)
    else:
        raise ValueError(f"unknown baseline {name!r}; choose one of {BASELINES}")
    net = model if isinstance(model, nn.Module) else model.model
    net.to(device)
    history = _fit(net, data, loss_of, train.epochs, train.lr, desc=name)
    return model, history


def save_trained(path: Path, key: str, trained: tuple[Any, list[float]]) -> None:
    """A trained baseline (model and loss history) with the key of its configuration, written whole
    (temporary file, then rename), so that notebook 04 reuses it while the key matches."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save({"key": key, "model": trained[0], "history": trained[1]}, tmp)
    os.replace(tmp, path)


def load_trained(path: Path, key: str) -> tuple[Any, list[float]] | None:
    """The baseline saved at ``path`` if its key is ``key``; None (and why, when a file was there) if it must be
    trained. The file is this project's own pickle (``save_trained``), so it is loaded with weights_only=False."""
    if not path.is_file():
        return None
    try:
        saved = torch.load(path, map_location=default_device(), weights_only=False)
    except Exception as exc:  # a damaged file is retrained, not trusted
        print(f"{path}: unreadable ({type(exc).__name__}: {exc}); training it again")
        return None
    if not isinstance(saved, dict) or saved.get("key") != key:
        print(f"{path}: trained under another configuration or other rows; training it again")
        return None
    return saved["model"], saved["history"]
