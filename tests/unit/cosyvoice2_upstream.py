"""A tiny CosyVoice2 model directory built with upstream's own classes (the ``cosyvoice`` package from
``cosyvoice-minicpmo`` on the package index, installed by ``scripts/install.sh --dev``), random weights.

``make_upstream_dir(folder)`` writes what a released ``CosyVoice2-0.5B`` holds, at small sizes:

* ``cosyvoice2.yaml``: upstream's config format (hyperpyyaml: ``!new:cosyvoice.llm.llm.Qwen2LM`` over
  ``Qwen2Encoder(pretrain_path=<qwen_pretrain_path>)``, ``CausalMaskedDiffWithXvec`` with an
  ``UpsampleConformerEncoder`` and a ``CausalConditionalCFM`` / ``CausalConditionalDecoder``,
  ``HiFTGenerator`` with a ``ConvRNNF0Predictor``), the released structure with fewer blocks and
  narrower layers; the S3 vocabulary (6561), 80 mel bins, 24 kHz, the flow encoder's width 512
  (upstream's ``UpsampleConformerEncoder`` fixes it) and the vocoder's upsampling (8 x 5 x 3, iSTFT
  hop 4: 480 samples per mel frame) are kept, so lengths are the real ones;
* ``CosyVoice-BlankEN/``: a Qwen2 ``config.json`` (RoPE base 1e6 written as ``rope_theta``, as
  released) + ``model.safetensors``, which ``Qwen2Encoder`` reads with ``from_pretrained``, and a
  byte-level tokenizer standing in for Qwen's;
* ``llm.pt``, ``flow.pt``, ``hift.pt``: ``torch.save(module.state_dict())`` of the modules upstream's
  yaml builds, as upstream's training saves them;
* ``speech_tokenizer_v2.onnx`` and ``campplus.onnx``: the tiny stand-ins of the codec tests (the real
  ones are downloads; rrpo, not upstream, runs them).

``upstream_problem()`` is None where upstream's classes import, else one line saying why (tests skip
with it).
"""

from __future__ import annotations

from pathlib import Path

SPEECH_VOCAB = 6561
TEXT_VOCAB = 320  # Qwen2 embedding rows: the 256 byte tokens, <|endoftext|> and CosyVoice2's specials fit
HIDDEN = 32

YAML = """\
# tiny CosyVoice2 (rrpo tests): upstream's format, small widths
sample_rate: 24000
llm_input_size: {hidden}
llm_output_size: {hidden}
spk_embed_dim: 192
qwen_pretrain_path: ''
token_frame_rate: 25
token_mel_ratio: 2

llm: !new:cosyvoice.llm.llm.Qwen2LM
    llm_input_size: !ref <llm_input_size>
    llm_output_size: !ref <llm_output_size>
    speech_token_size: {speech}
    length_normalized_loss: True
    lsm_weight: 0
    mix_ratio: [5, 15]
    llm: !new:cosyvoice.llm.llm.Qwen2Encoder
        pretrain_path: !ref <qwen_pretrain_path>
    sampling: !name:cosyvoice.utils.common.ras_sampling
        top_p: 0.8
        top_k: 25
        win_size: 10
        tau_r: 0.1

flow: !new:cosyvoice.flow.flow.CausalMaskedDiffWithXvec
    input_size: 512
    output_size: 80
    spk_embed_dim: !ref <spk_embed_dim>
    output_type: 'mel'
    vocab_size: {speech}
    input_frame_rate: !ref <token_frame_rate>
    only_mask_loss: True
    token_mel_ratio: !ref <token_mel_ratio>
    pre_lookahead_len: 3
    encoder: !new:cosyvoice.transformer.upsample_encoder.UpsampleConformerEncoder
        output_size: 512
        attention_heads: 2
        linear_units: 64
        num_blocks: 1
        dropout_rate: 0.1
        positional_dropout_rate: 0.1
        attention_dropout_rate: 0.1
        normalize_before: True
        input_layer: 'linear'
        pos_enc_layer_type: 'rel_pos_espnet'
        selfattention_layer_type: 'rel_selfattn'
        input_size: 512
        use_cnn_module: False
        macaron_style: False
        use_dynamic_chunk: True
    decoder: !new:cosyvoice.flow.flow_matching.CausalConditionalCFM
        in_channels: 240
        n_spks: 1
        spk_emb_dim: 80
        cfm_params: !new:omegaconf.DictConfig
            content:
                sigma_min: 1e-06
                solver: 'euler'
                t_scheduler: 'cosine'
                training_cfg_rate: 0.2
                inference_cfg_rate: 0.7
                reg_loss_type: 'l1'
        estimator: !new:cosyvoice.flow.decoder.CausalConditionalDecoder
            in_channels: 320
            out_channels: 80
            channels: [32]
            dropout: 0.0
            attention_head_dim: 16
            n_blocks: 1
            num_mid_blocks: 1
            num_heads: 2
            act_fn: 'gelu'
            static_chunk_size: !ref <token_frame_rate> * <token_mel_ratio>
            num_decoding_left_chunks: 2

hift: !new:cosyvoice.hifigan.generator.HiFTGenerator
    in_channels: 80
    base_channels: 16
    nb_harmonics: 8
    sampling_rate: !ref <sample_rate>
    nsf_alpha: 0.1
    nsf_sigma: 0.003
    nsf_voiced_threshold: 10
    upsample_rates: [8, 5, 3]
    upsample_kernel_sizes: [16, 11, 7]
    istft_params:
        n_fft: 16
        hop_len: 4
    resblock_kernel_sizes: [3, 7, 11]
    resblock_dilation_sizes: [[1, 3, 5], [1, 3, 5], [1, 3, 5]]
    source_resblock_kernel_sizes: [7, 7, 11]
    source_resblock_dilation_sizes: [[1, 3, 5], [1, 3, 5], [1, 3, 5]]
    lrelu_slope: 0.1
    audio_limit: 0.99
    f0_predictor: !new:cosyvoice.hifigan.f0_predictor.ConvRNNF0Predictor
        num_class: 1
        in_channels: 80
        cond_channels: 16

get_tokenizer: !name:cosyvoice.tokenizer.tokenizer.get_qwen_tokenizer
    token_path: !ref <qwen_pretrain_path>
    skip_special_tokens: True
allowed_special: 'all'
feat_extractor: !name:matcha.utils.audio.mel_spectrogram
    n_fft: 1920
    num_mels: 80
    sampling_rate: !ref <sample_rate>
    hop_size: 480
    win_size: 1920
    fmin: 0
    fmax: 8000
    center: False
"""

_PROBLEM: list = []


def upstream_problem() -> str | None:
    """None where upstream's CosyVoice2 classes import here; else why not, in one line."""
    if not _PROBLEM:
        try:
            import cosyvoice.cli.model  # noqa: F401
            import cosyvoice.flow.flow  # noqa: F401
            import cosyvoice.flow.flow_matching  # noqa: F401
            import cosyvoice.hifigan.generator  # noqa: F401
            import cosyvoice.llm.llm  # noqa: F401
            import hyperpyyaml  # noqa: F401

            _PROBLEM.append(None)
        except Exception as e:  # ImportError, or an extension that does not load
            _PROBLEM.append(f"upstream CosyVoice classes do not import ({type(e).__name__}: {str(e)[:120]})")
    return _PROBLEM[0]


def load_configs(folder: Path, skip=()) -> dict:
    """Upstream's own reading of ``folder/cosyvoice2.yaml`` (hyperpyyaml, ``qwen_pretrain_path``
    overridden to the folder's ``CosyVoice-BlankEN``, as ``cosyvoice.cli.cosyvoice.CosyVoice2``
    does), with the entries named in ``skip`` (e.g. ``llm``, ``flow``, ``hift``) left unbuilt."""
    from hyperpyyaml import load_hyperpyyaml

    # the text tokenizer (get_tokenizer) imports openai-whisper; nothing here uses it
    overrides = {"qwen_pretrain_path": str(folder / "CosyVoice-BlankEN"), "get_tokenizer": None}
    overrides.update({k: None for k in skip})
    with open(folder / "cosyvoice2.yaml", encoding="utf-8") as f:
        return load_hyperpyyaml(f, overrides=overrides)


def upstream_llm(folder: Path, llm_pt: Path | None = None):
    """Upstream's ``Qwen2LM`` from the folder's yaml, with ``llm_pt`` (default the folder's) loaded
    strictly, as upstream's ``CosyVoice2Model.load`` does; eval mode."""
    import torch

    llm = load_configs(folder, skip=("flow", "hift"))["llm"]  # the flow imports diffusers, which 4.x's hub lacks
    state = torch.load(llm_pt or folder / "llm.pt", map_location="cpu", weights_only=True)
    llm.load_state_dict(state, strict=True)
    return llm.eval()


def write_byte_tokenizer(folder: Path) -> None:
    """A byte-level tokenizer (256 byte ids, no merges) that ``AutoTokenizer`` reads offline: the
    stand-in for Qwen's, whose files are a download. Upstream's own tokenizer wrapper is not used
    (it imports openai-whisper); rrpo's ``QwenTextTokenizer`` adds CosyVoice2's special tokens."""
    import json

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel

    vocab = {ch: i for i, ch in enumerate(sorted(ByteLevel.alphabet(), key=lambda c: ord(c)))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 4096}), encoding="utf-8"
    )


def make_upstream_dir(folder: Path, seed: int = 0) -> Path:
    """Write the tiny model directory (see the module docstring); return it."""
    import json

    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from tests.unit.test_codec_cosyvoice2 import fake_tokenizer
    from tests.unit.test_codec_cosyvoice2_decode import fake_campplus

    folder = Path(folder)
    folder.mkdir(parents=True)
    qwen = folder / "CosyVoice-BlankEN"
    torch.manual_seed(seed)
    cfg = Qwen2Config(
        vocab_size=TEXT_VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        rope_theta=1e6,
        initializer_range=0.2,  # weights large enough that attention, hence the RoPE base, shows in the logits
    )
    Qwen2ForCausalLM(cfg).save_pretrained(str(qwen))
    # as released (written by transformers 4.x): the RoPE base as top-level rope_theta. transformers 5.x
    # writes only rope_parameters, which 4.x does not read (it would use 10000)
    conf = json.loads((qwen / "config.json").read_text(encoding="utf-8"))
    conf["rope_theta"] = 1e6
    conf.pop("rope_parameters", None)
    (qwen / "config.json").write_text(json.dumps(conf, indent=2), encoding="utf-8")
    write_byte_tokenizer(qwen)
    (folder / "cosyvoice2.yaml").write_text(YAML.format(hidden=HIDDEN, speech=SPEECH_VOCAB), encoding="utf-8")
    torch.manual_seed(seed + 1)
    configs = load_configs(folder)
    for name in ("llm", "flow", "hift"):
        module = configs[name]
        with torch.no_grad():  # random, not zero-initialised, heads and biases: every tensor matters
            for p in module.parameters():
                if p.ndim == 1 and torch.all(p == 0):
                    p.normal_(0, 0.02)
        torch.save(module.state_dict(), folder / f"{name}.pt")
    fake_tokenizer(folder / "speech_tokenizer_v2.onnx")
    fake_campplus(folder / "campplus.onnx")
    return folder


def compare_logits(folder: Path, seed: int = 0) -> dict:
    """rrpo's teacher-forced logits of ``folder/llm.pt`` against upstream ``Qwen2LM``'s on the same
    inputs (two rows of text ids and speech tokens, different lengths; upstream's unistream sequence
    ``[sos, text, task_id, speech]`` from its own ``prepare_lm_input_target``, right-padded, through
    ``Qwen2Encoder`` and ``llm_decoder``; rrpo's left-padded prompt). Returns the largest absolute
    difference over the valid positions, the two losses (upstream's ``forward`` with label smoothing
    0, rrpo's mean cross-entropy over the same targets) and the transformers version. Importable
    under either transformers major (the test runs it in a subprocess for 4.x)."""
    import torch
    import transformers

    from rrpo.policy.io import load_cosyvoice2
    from rrpo.policy.model import IGNORE, Prompts

    g = torch.Generator().manual_seed(seed)
    text_lens = torch.tensor([7, 4])
    speech_lens = torch.tensor([9, 5])  # at most 3 speech tokens per text token: upstream's unistream branch
    text = torch.randint(1, 270, (2, 7), generator=g) * (torch.arange(7)[None] < text_lens[:, None])
    speech = torch.randint(0, SPEECH_VOCAB, (2, 9), generator=g) * (torch.arange(9)[None] < speech_lens[:, None])

    pol = load_cosyvoice2(folder, text_tokenizer=False)
    with torch.no_grad():
        ours = pol(Prompts(text, text_lens, text_lens), speech, speech_lens)  # (B, T+1, V)
        tgt = pol.targets(speech, speech_lens)
        our_loss = torch.nn.functional.cross_entropy(
            ours.reshape(-1, ours.shape[-1]), tgt.reshape(-1), ignore_index=IGNORE
        )

    llm = upstream_llm(folder)
    with torch.no_grad():
        temb = llm.llm.model.model.embed_tokens(text)
        semb = llm.speech_embedding(speech)
        _, lm_input, lm_len = llm.prepare_lm_input_target(text, temb, text_lens, speech, semb, speech_lens)
        hidden, _ = llm.llm(lm_input, lm_len)
        theirs = llm.llm_decoder(hidden)
        batch = {
            "text_token": text,
            "text_token_len": text_lens,
            "speech_token": speech,
            "speech_token_len": speech_lens,
        }
        their_loss = llm(batch, torch.device("cpu"))["loss"]
    diff = 0.0
    for b in range(2):
        n, m = int(text_lens[b]), int(speech_lens[b])
        up = theirs[b, n + 1 : n + 2 + m]  # from task_id on: m speech positions and the end-of-speech one
        diff = max(diff, float((up - ours[b, : m + 1]).abs().max()))
    return {
        "max_abs_diff": diff,
        "upstream_loss": float(their_loss),
        "rrpo_loss": float(our_loss),
        "logit_scale": float(ours.abs().max()),
        "transformers": transformers.__version__,
    }
