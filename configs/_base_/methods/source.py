# Source: the source model scored on the plain view, no adaptation.
ctta_method = dict(type='Source')
