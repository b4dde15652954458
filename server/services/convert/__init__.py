"""Proto⇄domain conversions, one module per service (common.py: what several share).

A servicer imports its own module and common.py only; sharing.py builds on insights.py, since a
shared read shows an insight.
"""
