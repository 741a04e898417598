"""A local stand-in for the DingTalk Open Platform (`python -m sandbox`).

It plays DingTalk's side of every conversation the workbench has with DingTalk, so it deliberately shares no
code with the product: crypto, paging and error shapes are written from `reference/dingtalk.md`. A bug shared by
both sides would otherwise pass every test and fail against the real DingTalk.
"""
