"""Tools a model calls during a rollout (Agent RFT): the specs and how a call is made.

`remote.py` POSTs a call to a tool server in OpenAI Agent RFT's `function_call` /
`function_call_output` bodies. Torch-free, like `graders/`: the service's `tool/run` route and
the trainer's rollouts both call it.
"""
