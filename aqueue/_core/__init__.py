"""The client side: jobs, the task registry and producer, workflows, wire types.

Private: the public names are re-exported by :mod:`aqueue`.
"""
