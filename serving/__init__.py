"""The serving core: the request chain and the model a process serves, reloadable in place.

It knows no Flask: the web layer, the batch tool and the benchmarks all use it.
"""
