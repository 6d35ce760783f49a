"""Which dataset's titles play new items for the pruned vocabulary: the other MovieLens by default."""

from prunerec_utils.studies.new_items import OTHER, new_item_line, new_items_source


def test_the_other_movielens_plays_the_new_items_in_both_directions():
    assert new_items_source("ml-100k", OTHER) == "ml-1m" and new_items_source("ml-1m", OTHER) == "ml-100k"
    assert new_items_source("amazon-Video_Games", OTHER) is None  # no counterpart: the check is skipped
    assert new_items_source("amazon-Video_Games", "ml-1m") == "ml-1m"  # a name is taken as given
    assert new_items_source("ml-1m", "ml-1m") is None and new_items_source("ml-100k", None) is None


def test_the_line_states_titles_share_and_lengths():
    cost = {"source": "ml-1m", "titles": 2305, "share_needing_pruned_tokens": 0.4123, "mean_tokens_full": 9.87,
            "mean_tokens_restricted": 11.234}
    assert new_item_line(cost, "ml-100k") == ("2,305 ml-1m titles not in ml-100k: 41.2% need a removed token; "
                                              "answer length 9.87 -> 11.23 tokens on average")
