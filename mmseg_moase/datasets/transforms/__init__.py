from .corruptions import CORRUPTIONS, WEATHER_CORRUPTIONS, WeatherCorruption

__all__ = ['CORRUPTIONS', 'WEATHER_CORRUPTIONS', 'WeatherCorruption']
