from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

TEMPLATE = Path(__file__).resolve().parent.parent / "model_cards" / "longbird_bigbird.md"


def test_bigbird_card_template_renders_with_results():
    data = ModelCardData(
        license="apache-2.0",
        library_name="transformers",
        tags=["longbird", "bigbird", "long-context"],
        model_name="tiny-bigbird",
        eval_results=[
            EvalResult(task_type="text-classification", dataset_type="epdnew", dataset_name="EPDnew promoters",
                       metric_type="accuracy", metric_value=0.9)
        ],
    )
    card = ModelCard.from_template(data, template_path=str(TEMPLATE), model_id="org/tiny-bigbird",
                                   window_blocks=5, num_random_blocks=0)
    text = str(card)
    assert "# org/tiny-bigbird" in text
    assert 'AutoModel.from_pretrained("org/tiny-bigbird")' in text
    assert "window 5 blocks, 0 random blocks" in text
    assert card.data.eval_results[0].metric_value == 0.9
