"""The cache keyword across the two transformers of the project: 5.24 (requirements-cpu.txt) names it `cache`,
5.17 (requirements-gpu.txt, vLLM's cap) `past_key_values`, and 5.17's generate refuses `cache` while its forward
ignores it (every decoding step would then see only its own token)."""

from giftlab.evaluation.generation import cache_kwargs


class Old:
    def forward(self, input_ids=None, attention_mask=None, past_key_values=None, use_cache=None, **kwargs):
        return None


class New:
    def forward(self, input_ids=None, attention_mask=None, cache=None, use_cache=None, **kwargs):
        return None


def test_the_cache_goes_under_the_keyword_the_model_takes():
    marker = object()
    assert cache_kwargs(Old(), marker) == {"past_key_values": marker}
    assert cache_kwargs(New(), marker) == {"cache": marker}


def test_this_transformers_models_take_the_keyword_chosen():
    import inspect

    from transformers import LlamaForCausalLM, Qwen2ForCausalLM

    for model_class in (Qwen2ForCausalLM, LlamaForCausalLM):
        (keyword,) = cache_kwargs(model_class.__new__(model_class), None)
        assert keyword in inspect.signature(model_class.forward).parameters
