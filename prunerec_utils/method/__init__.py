"""The method, tensors in and tensors out (no files): what a user imports to prune a model.

``heads`` (eq. 3-6), ``hidden`` (eq. 7), ``mlp`` (eq. 8-11), ``layers`` (eq. 12), ``surgery``
(stock-loadable cuts), ``training`` (response-only loss, collator, trainer), ``distill`` (eq. 13),
``vocab`` (dataset-restricted tokenizer), ``beam_search`` + ``title_search`` (constrained beam search over item titles), ``metrics``
(HR/NDCG@K, bootstrap intervals, retention).
"""
