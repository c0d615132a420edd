"""Tiny random-weight models built from configs and saved to disk, as a user's models would be.

Each builder writes a folder (or file) that the providers load by path, through the same
``from_pretrained`` / open_clip code a downloaded model takes. Tokenizers are built offline from
plain vocabularies (byte-level or character-level BPE without merges), so nothing is fetched.
Weights are seeded: a session builds the same models every time.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
EOS = "<|endoftext|>"
#: Weight scale for the translators and the captioner. At the usual 0.02 a model this small gives
#: the same few tokens whatever its input (the conformance kit's "looks at the image" and "two
#: targets, two translations" checks cannot tell it from a provider that drops its input); at this
#: scale the input moves the output, as a trained model's does.
SENSITIVE_INIT = 0.5


def _byte_alphabet() -> list[str]:
    from tokenizers import pre_tokenizers

    return sorted(pre_tokenizers.ByteLevel.alphabet())


def gpt2(
    root: Path, *, name: str = "gpt2", n_embd: int = 32, n_layer: int = 2, n_head: int = 2, n_positions: int = 512
) -> Path:
    """A GPT-2 with a byte-level tokenizer (any text tokenizes) and a chat template set on it."""
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

    folder = root / name
    vocab = {ch: i for i, ch in enumerate(_byte_alphabet())}
    vocab[EOS] = len(vocab)
    tok = GPT2Tokenizer(vocab=vocab, merges=[], unk_token=EOS, bos_token=EOS, eos_token=EOS)
    tok.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(vocab),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        bos_token_id=vocab[EOS],
        eos_token_id=vocab[EOS],
    )
    GPT2LMHeadModel(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def nllb(root: Path) -> Path:
    """NLLB-200's architecture (M2M100) with an NLLB tokenizer: its 202 ``eng_Latn``-style
    language tokens come with the tokenizer class; the vocabulary is characters."""
    from transformers import M2M100Config, M2M100ForConditionalGeneration, NllbTokenizer

    folder = root / "nllb"
    chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'-"
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "▁": 4}
    for ch in chars:
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault("▁" + ch, len(vocab))
    tok = NllbTokenizer(vocab=vocab, merges=[])
    torch.manual_seed(0)
    config = M2M100Config(
        vocab_size=len(tok),
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=256,
        init_std=SENSITIVE_INIT,
        tie_word_embeddings=False,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
    )
    model = M2M100ForConditionalGeneration(config)
    # The 202 language tokens outnumber the characters: at this weight scale a random model would
    # mostly predict them, and they decode to nothing. Out of the output layer they still steer it.
    with torch.no_grad():
        model.lm_head.weight[len(vocab) :] = 0.0
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


SENTENCES = [
    "Hello world.",
    "Good morning, how are you?",
    "The sea is calm tonight.",
    "Bonjour le monde.",
    "La mer est calme ce soir.",
    "A red fox jumps over the fence.",
]


def _sentencepiece() -> tuple[bytes, list[str]]:
    """A tiny unigram SentencePiece model trained on a few sentences, and its pieces."""
    import io

    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(SENTENCES * 5),
        model_writer=model,
        vocab_size=60,
        model_type="unigram",
        character_coverage=1.0,
        hard_vocab_limit=False,
        bos_id=-1,
        eos_id=-1,
        unk_id=0,
        pad_id=-1,
        minloglevel=2,
    )
    proc = sentencepiece.SentencePieceProcessor(model_proto=model.getvalue())
    return model.getvalue(), [proc.id_to_piece(i) for i in range(proc.get_piece_size())]


def _seq2seq_config(cls, vocab_size: int, **ids):
    return cls(
        vocab_size=vocab_size,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=128,
        init_std=SENSITIVE_INIT,
        **ids,
    )


def cross_encoder(root: Path) -> Path:
    """A reranker as sentence-transformers' CrossEncoder saves one: BERT for sequence
    classification with one label, and a WordPiece tokenizer whose characters (and ``##``
    continuations) spell any lower-case text, plus a few whole words."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    folder = root / "cross-encoder"
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'-")
    words = ["the", "sea", "is", "calm", "tonight", "red", "fox", "lighthouse", "story", "picture"]
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {w: i for i, w in enumerate(specials + chars + [f"##{c}" for c in chars] + words)}
    tok = BertTokenizer(vocab=vocab, model_max_length=128)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=1,
        initializer_range=SENSITIVE_INIT,
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def marian(root: Path) -> Path:
    """A single-pair Marian model named like OPUS-MT's (opus-mt-en-fr), with a SentencePiece
    tokenizer that says its pair (source_lang / target_lang)."""
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    folder = root / "opus-mt-en-fr"
    folder.mkdir(parents=True)
    spm, pieces = _sentencepiece()
    for name in ("source.spm", "target.spm"):
        (folder / name).write_bytes(spm)
    vocab = {"</s>": 0, "<unk>": 1, "<pad>": 2}
    for piece in pieces:
        vocab.setdefault(piece, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    tok = MarianTokenizer(
        str(folder / "source.spm"),
        str(folder / "target.spm"),
        str(folder / "vocab.json"),
        source_lang="en",
        target_lang="fr",
    )
    torch.manual_seed(0)
    config = _seq2seq_config(
        MarianConfig, len(vocab), pad_token_id=2, eos_token_id=0, decoder_start_token_id=2, forced_eos_token_id=0
    )
    MarianMTModel(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def m2m100(root: Path) -> Path:
    """An M2M100 with its own tokenizer (SentencePiece + ``__en__``-style language tokens)."""
    from transformers import M2M100Config, M2M100ForConditionalGeneration, M2M100Tokenizer

    folder = root / "m2m100"
    folder.mkdir(parents=True)
    spm, pieces = _sentencepiece()
    (folder / "sentencepiece.bpe.model").write_bytes(spm)
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for piece in pieces:
        vocab.setdefault(piece, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    tok = M2M100Tokenizer(str(folder / "vocab.json"), str(folder / "sentencepiece.bpe.model"))
    # Language tokens (and 8 "madeup" words) are numbered after the vocabulary.
    size = max(len(tok), max(tok.lang_code_to_id.values()) + 1 + 8)
    torch.manual_seed(0)
    config = _seq2seq_config(
        M2M100Config, size, pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2
    )
    M2M100ForConditionalGeneration(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def blip(root: Path) -> Path:
    """A BLIP captioner: tiny ViT + BERT decoder, a word-level BERT tokenizer, 32px images."""
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    folder = root / "blip"
    words = [
        "a",
        "an",
        "the",
        "of",
        "on",
        "in",
        "with",
        "photo",
        "picture",
        "image",
        "cat",
        "dog",
        "red",
        "blue",
        "green",
        "sky",
        "tree",
        "house",
    ]
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]
    vocab = {w: i for i, w in enumerate(specials + list("abcdefghijklmnopqrstuvwxyz") + words)}
    tok = BertTokenizer(vocab=vocab, bos_token="[DEC]", model_max_length=64)
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tok)
    torch.manual_seed(0)
    config = BlipConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "max_position_embeddings": 64,
            "pad_token_id": vocab["[PAD]"],
            "bos_token_id": vocab["[DEC]"],
            "sep_token_id": vocab["[SEP]"],
            "eos_token_id": vocab["[SEP]"],
            "initializer_range": SENSITIVE_INIT,
        },
        vision_config={
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "image_size": 32,
            "patch_size": 8,
            "initializer_range": SENSITIVE_INIT,
        },
        projection_dim=32,
        initializer_range=SENSITIVE_INIT,
    )
    BlipForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


VISION_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image>{% else %}{{ c['text'] }}{% endif %}{% endfor %}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def llava(root: Path) -> Path:
    """A LLaVA (image-text-to-text): CLIP vision tower + Llama, a processor with a chat template
    that places ``<image>``, expanded to the 16 patch tokens of a 32px image."""
    from transformers import (
        AddedToken,
        CLIPImageProcessor,
        CLIPVisionConfig,
        GPT2Tokenizer,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    folder = root / "llava"
    vocab = {ch: i for i, ch in enumerate(_byte_alphabet())}
    vocab[EOS] = len(vocab)
    tok = GPT2Tokenizer(vocab=vocab, merges=[], unk_token=EOS, bos_token=EOS, eos_token=EOS, pad_token=EOS)
    tok.add_tokens([AddedToken("<image>", special=True, normalized=False)])
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tok,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=VISION_CHAT_TEMPLATE,
    )
    torch.manual_seed(0)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
            projection_dim=32,
        ),
        text_config=LlamaConfig(
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            # Room for the beam search judge's prompt: two images and the seed's instructions, one
            # token per character with this byte-level vocabulary.
            max_position_embeddings=2048,
            bos_token_id=vocab[EOS],
            eos_token_id=vocab[EOS],
            pad_token_id=vocab[EOS],
        ),
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        image_seq_length=16,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    LlavaForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def stable_diffusion(root: Path) -> Path:
    """A Stable Diffusion pipeline: tiny UNet, a VAE with SD's 8x scale, a CLIP text encoder."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = root / "sd"
    vocab = {"<|startoftext|>": 0, EOS: 1}
    for ch in _byte_alphabet():
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
    )
    vae = AutoencoderKL(
        block_out_channels=[16, 16, 32, 32],
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=64,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=64,
            num_attention_heads=2,
            num_hidden_layers=2,
            max_position_embeddings=77,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            projection_dim=32,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)
    return folder


OPEN_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def open_clip_model(root: Path) -> dict[str, Path]:
    """A tiny CLIP twice over: as a local-dir folder (open_clip_config.json + weights) and as a
    custom-architecture config file plus a checkpoint; and a LAION-format aesthetic MLP head."""
    import open_clip
    from safetensors.torch import save_file

    folder = root / "clip"
    folder.mkdir(parents=True, exist_ok=True)
    config_file = root / "loom-tiny-clip.json"
    config_file.write_text(json.dumps(OPEN_CLIP_CONFIG))
    open_clip.add_model_config(config_file)
    torch.manual_seed(0)
    model = open_clip.create_model("loom-tiny-clip", pretrained=None)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, folder / "open_clip_model.safetensors")
    checkpoint = root / "tiny-clip.pt"
    torch.save(state, checkpoint)
    preprocess = {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]}
    (folder / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": OPEN_CLIP_CONFIG, "preprocess_cfg": preprocess})
    )
    # The "improved aesthetic predictor" layout: Linear layers at 0, 2, 4, 6, 7 (Dropouts between).
    head = torch.nn.Sequential(
        torch.nn.Linear(32, 1024),
        torch.nn.Dropout(0.2),
        torch.nn.Linear(1024, 128),
        torch.nn.Dropout(0.2),
        torch.nn.Linear(128, 64),
        torch.nn.Dropout(0.1),
        torch.nn.Linear(64, 16),
        torch.nn.Linear(16, 1),
    )
    with torch.no_grad():
        head[-1].bias.fill_(5.0)  # a random head scores near 0; centre it on the 0-10 scale
    head_file = root / "aesthetic-head.pth"
    torch.save({f"layers.{k}": v for k, v in head.state_dict().items()}, head_file)
    return {"folder": folder, "config": config_file, "checkpoint": checkpoint, "head": head_file}


def build_all(root: Path) -> dict[str, Path]:
    """Every tiny model the torch provider tests use, under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    paths = {
        "gpt2": gpt2(root),
        # Every byte is a token: a chat with tools described in its prompt takes about a thousand.
        "gpt2_long": gpt2(root, name="gpt2-long", n_positions=2048),
        "nllb": nllb(root),
        "cross_encoder": cross_encoder(root),
        "marian": marian(root),
        "m2m100": m2m100(root),
        "blip": blip(root),
        "llava": llava(root),
        "sd": stable_diffusion(root),
    }
    clip = open_clip_model(root)
    paths.update(
        {
            "clip": clip["folder"],
            "clip_config": clip["config"],
            "clip_checkpoint": clip["checkpoint"],
            "aesthetic_head": clip["head"],
        }
    )
    return paths
