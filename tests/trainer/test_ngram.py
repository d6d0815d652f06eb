"""The count-based reference point: interpolated Kneser-Ney, a proper distribution."""

import pytest

from trainer.evaluation.ngram import EOL, KneserNey, words

TEXT = "the cat sat on the mat\nthe dog sat on the log\n\nthe cat ate the fish\n" * 3


def test_words_follow_the_wikitext_convention():
    assert words("a b\n\nc\n") == ["a", "b", EOL, EOL, "c", EOL, EOL]


@pytest.mark.parametrize("ctx", [("the", "cat"), ("sat", "on"), ("never", "seen"), ("<s>", "<s>")])
def test_every_context_gives_a_distribution_over_the_vocab_and_one_unseen_word(ctx):
    lm = KneserNey(words(TEXT))
    total = sum(lm.p(*ctx, w) for w in lm.vocab) + lm.p(*ctx, "<never-seen-word>")
    assert total == pytest.approx(1.0, abs=1e-9)


def test_seen_text_is_likelier_than_shuffled_text():
    lm = KneserNey(words(TEXT))
    seen = lm.perplexity(words("the cat sat on the mat\n"))
    shuffled = lm.perplexity(words("mat the on sat cat the\n"))
    assert 1 < seen < shuffled
