from trainer.wikitext import detokenize


def test_detokenize():
    assert detokenize("the 1 @,@ 000 @-@ strong army , led by ( a ) man 's") == "the 1,000-strong army, led by (a) man's"
    assert detokenize(" = Title = \n") == " = Title =\n"
